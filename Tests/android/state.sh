# Runs on the simulated device (busybox sh): one line saying what a kprobe-run run left behind.
#   kheaders=loaded|unloaded  kprobe-run=<number of kprobe-run processes>  tracefs=mounted|unmounted
if [ -d /sys/module/kheaders ]; then kheaders=loaded; else kheaders=unloaded; fi
count=0
for exe in /proc/[0-9]*/exe; do
    case "$(readlink "$exe" 2>/dev/null)" in */kprobe-run) count=$((count + 1)) ;; esac
done
if [ -e /sys/kernel/tracing/trace_pipe ]; then tracefs=mounted; else tracefs=unmounted; fi
echo "kheaders=$kheaders kprobe-run=$count tracefs=$tracefs"
