/* How many CPUs this process may use: the affinity mask, capped by the CPU
 * quota of its cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us over
 * cpu.cfs_period_us, at the process's cgroup and every ancestor), as a
 * container's limit. Read once; WS_NUM_THREADS overrides the default
 * worker count built on it. */
#include "ws_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The mount point of the cgroup hierarchy holding `controller` ("" for
 * v2), from a /proc/self/mountinfo-format file. */
static bool ws__cgroup_mount(const char *mountinfo, const char *controller, char *out, size_t cap) {
    FILE *f = fopen(mountinfo, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        /* id parent major:minor root mount-point options ... - fstype source super-options */
        char *dash = strstr(line, " - ");
        if (!dash)
            continue;
        char mnt[1024], fstype[64], super[1024] = "";
        if (sscanf(line, "%*s %*s %*s %*s %1023s", mnt) != 1 || sscanf(dash + 3, "%63s %*s %1023s", fstype, super) < 1)
            continue;
        if (!*controller) {
            found = strcmp(fstype, "cgroup2") == 0;
        } else if (strcmp(fstype, "cgroup") == 0) {
            for (char *tok = strtok(super, ","); tok && !found; tok = strtok(NULL, ","))
                found = strcmp(tok, controller) == 0;
        }
        if (found)
            snprintf(out, cap, "%s", mnt);
    }
    fclose(f);
    return found;
}

/* The limit a quota gives, rounded up to whole CPUs; 0 for none. */
static int ws__quota_cpus(long long quota, long long period) {
    if (quota <= 0 || period <= 0)
        return 0;
    long long n = (quota + period - 1) / period;
    return n > WS__MAX_THREADS ? WS__MAX_THREADS : (int)n;
}

/* The smallest limit found at dir and its ancestors down to the mount
 * point `root`. */
static int ws__cgroup_limit_at(const char *root, const char *path, bool v2) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s%s", root, strcmp(path, "/") == 0 ? "" : path);
    /* Inside a cgroup namespace the path may not exist under the mount:
     * then the mount itself is the process's cgroup. */
    char probe[2100];
    snprintf(probe, sizeof probe, "%s/%s", dir, v2 ? "cgroup.procs" : "tasks");
    if (access(probe, F_OK) != 0)
        snprintf(dir, sizeof dir, "%s", root);
    size_t rootlen = strlen(root);
    int best = 0;
    for (;;) {
        char file[2100];
        long long quota = -1, period = 0;
        if (v2) {
            snprintf(file, sizeof file, "%s/cpu.max", dir);
            FILE *f = fopen(file, "r");
            if (f) {
                char q[32];
                if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0)
                    quota = strtoll(q, NULL, 10);
                fclose(f);
            }
        } else {
            snprintf(file, sizeof file, "%s/cpu.cfs_quota_us", dir);
            FILE *f = fopen(file, "r");
            if (f) {
                if (fscanf(f, "%lld", &quota) != 1)
                    quota = -1;
                fclose(f);
            }
            snprintf(file, sizeof file, "%s/cpu.cfs_period_us", dir);
            if ((f = fopen(file, "r"))) {
                if (fscanf(f, "%lld", &period) != 1)
                    period = 0;
                fclose(f);
            }
        }
        int n = ws__quota_cpus(quota, period);
        if (n > 0 && (best == 0 || n < best))
            best = n;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < rootlen)
            break;
        *slash = '\0';
    }
    return best;
}

int ws__cgroup_cpu_limit(const char *cgroup_file, const char *mountinfo_file) {
    FILE *f = fopen(cgroup_file, "r");
    if (!f)
        return 0;
    char line[4096];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        /* hierarchy-id:controllers:path */
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = '\0';
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        char root[1024];
        int n = 0;
        if (strcmp(line, "0") == 0 && *controllers == '\0') {
            if (ws__cgroup_mount(mountinfo_file, "", root, sizeof root))
                n = ws__cgroup_limit_at(root, path, true);
        } else {
            char list[256];
            snprintf(list, sizeof list, "%s", controllers);
            bool cpu = false;
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
                cpu |= strcmp(tok, "cpu") == 0;
            if (cpu && ws__cgroup_mount(mountinfo_file, "cpu", root, sizeof root))
                n = ws__cgroup_limit_at(root, path, false);
        }
        if (n > 0 && (best == 0 || n < best))
            best = n;
    }
    fclose(f);
    return best;
}

static _Atomic int ws__cpus; /* 0: not read yet */

int ws_cpu_count(void) {
    int n = atomic_load_explicit(&ws__cpus, memory_order_relaxed);
    if (WS__LIKELY(n > 0))
        return n;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)(c < WS__MAX_THREADS ? c : WS__MAX_THREADS) : 1;
    }
    int quota = ws__cgroup_cpu_limit("/proc/self/cgroup", "/proc/self/mountinfo");
    if (quota > 0 && quota < n)
        n = quota;
    atomic_store_explicit(&ws__cpus, n, memory_order_relaxed);
    return n;
}

int ws_default_num_threads(void) {
    const char *s = getenv("WS_NUM_THREADS");
    if (s && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno == 0 && *end == '\0' && v > 0 && v <= WS__MAX_THREADS)
            return (int)v;
    }
    return ws_cpu_count();
}
