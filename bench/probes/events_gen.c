/* (f) event generator: COUNT getppid() calls, as fast as possible (RATE 0) or paced to RATE per
 * second in batches of 1000, stopping early after SECONDS (0: no limit); waits for a byte on stdin
 * first, so the harness starts the clock. Prints the seconds the calls took and how many it made.
 * Usage: kprgen COUNT RATE [SECONDS]. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long count = atol(argv[1]), i;
    double rate = argc > 2 ? atof(argv[2]) : 0, limit = argc > 3 ? atof(argv[3]) : 0;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    double start = now();
    for (i = 0; i < count; i++) {
        syscall(SYS_getppid);
        if (i % 1000 == 999) {
            double current = now();
            if (limit > 0 && current - start >= limit) {
                i++;
                break;
            }
            double wait = rate > 0 ? start + (i + 1) / rate - current : 0;
            if (wait > 0) {
                struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
                nanosleep(&ts, NULL);
            }
        }
    }
    printf("%.6f %ld\n", now() - start, i);
    return 0;
}
