/* (f) event generator: N getppid() calls, as fast as possible (RATE 0) or paced to RATE per
 * second in batches of 1000; waits for a byte on stdin first, so the harness starts the clock.
 * Prints the seconds the calls took. */
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
    long count = atol(argv[1]);
    double rate = argc > 2 ? atof(argv[2]) : 0;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    double start = now();
    for (long i = 0; i < count; i++) {
        syscall(SYS_getppid);
        if (rate > 0 && i % 1000 == 999) {
            double due = start + (i + 1) / rate, wait = due - now();
            if (wait > 0) {
                struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
                nanosleep(&ts, NULL);
            }
        }
    }
    printf("%.6f\n", now() - start);
    return 0;
}
