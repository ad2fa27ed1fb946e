/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs a fuzz target over every file in the directories (or the files) named on the command
 * line, so the corpus replays as an ordinary test in every build, sanitizers or not.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(int dirfd, const char *name)
{
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) uint8_t *data = NULL;
        struct stat st;
        size_t done = 0;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return 0;
        data = malloc(st.st_size > 0 ? (size_t) st.st_size : 1);
        if (!data)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, data + done, (size_t) st.st_size - done);

                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        /* An exact-size copy, so the sanitizers see any read past the input. */
        LLVMFuzzerTestOneInput(data, done);
        return 1;
}

static int replay_path(const char *path, unsigned *count)
{
        _cleanup_(closep) int fd = -1;
        struct dirent *de;
        DIR *d;
        int r = 0;

        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                r = replay_file(AT_FDCWD, path);
                if (r > 0)
                        (*count)++;
                return r < 0 ? r : 0;
        }
        d = fdopendir(fd);
        if (d)
                fd = -1; /* the DIR owns it now */
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                r = replay_file(dirfd(d), de->d_name);
                if (r < 0) {
                        fprintf(stderr, "%s/%s: %s\n", path, de->d_name, strerror(-r));
                        break;
                }
                if (r > 0)
                        (*count)++;
                r = 0;
        }
        closedir(d);
        return r;
}

int main(int argc, char *argv[])
{
        unsigned count = 0;

        for (int i = 1; i < argc; i++) {
                int r = replay_path(argv[i], &count);

                if (r < 0) {
                        fprintf(stderr, "Failed to replay %s: %s\n", argv[i], strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        if (count == 0) {
                fprintf(stderr, "No inputs found.\n");
                return EXIT_FAILURE;
        }
        printf("Replayed %u inputs.\n", count);
        return EXIT_SUCCESS;
}
