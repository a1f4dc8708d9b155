// The event source of (f): getppid(2) in a tight loop for SECONDS, paced to RATE calls a second
// when RATE is given (0: as fast as it goes). Waits for a line on stdin, so that the tracer can
// attach first, then prints how many calls it made.
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    double seconds = atof(argv[1]), rate = argc > 2 ? atof(argv[2]) : 0;
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    unsigned long long calls = 0;
    double start = now(), end = start + seconds;
    for (double t = start; t < end; t = now()) {
        if (rate > 0) {
            // After a preemption it catches up: the rate is an average, as a real workload's is.
            for (unsigned long long due = (t - start) * rate; calls < due; calls++)
                syscall(SYS_getppid);
        } else {
            for (int i = 0; i < 256; i++)
                syscall(SYS_getppid);
            calls += 256;
        }
    }
    printf("%llu\n", calls);
    return 0;
}
