/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The symbols kyso-pkcs11.so exports (see kyso-pkcs11.map). The 2.40
 * C_GetFunctionList is declared by the PKCS#11 header; the two 3.0 entry
 * points are not in p11-kit's 2.40 header, so they are declared here.
 * Everything else is reached through the function lists.
 */
#pragma once

#include "pkcs11.h"

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface,
                     CK_FLAGS flags);
