/* (f) event generator: COUNT getppid() calls, as fast as possible (RATE 0) or paced to RATE per
 * second, stopping early after SECONDS (0: no limit); waits for a byte on stdin first, so the
 * harness starts the clock. Prints the seconds the calls took and how many it made.
 * Usage: kprgen COUNT RATE [SECONDS].
 *
 * The pace is checked every PACE calls: between checks the calls come as fast as they can, so a
 * check every 1000 calls made 4,000-record bursts at the flat-out rate, 61% of a 256 KiB ring
 * buffer, and left a consumer only the rest for its scheduling delays at any offered rate. Every
 * 50 calls a burst is 200 records (3%), and the offered rate is what it says. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PACE 50

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
        if (i % PACE == PACE - 1) {
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
