// test-util.c — common/util.c's CPU count: cgroup CPU quotas (v1 and v2, nested cgroups, a
// cgroup namespace, escaped mount points) read from a directory tree made here, described to
// cgroup_cpu_limit by mountinfo and /proc/self/cgroup texts; and cpus_available against the
// affinity mask that sched_getaffinity reports.
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "util.h"

static char top[256];

// Writes text to top/rel, creating the directories on the way.
static void put(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", top, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    make_dirs(path);
    *slash = '/';
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

// A mountinfo text with one line: the hierarchy `root` mounted at top/point.
static const char *mountinfo(const char *root, const char *point, const char *fstype, const char *superopts)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "23 1 0:21 / /proc rw,nosuid - proc proc rw\n"
             "31 23 0:28 %s %s/%s rw,relatime shared:9 - %s %s %s\n",
             root, top, point, fstype, fstype, superopts);
    return buf;
}

static void test_v2(void)
{
    const char *mi = mountinfo("/", "v2", "cgroup2", "rw");
    put("v2/a/b/cpu.max", "max 100000\n");
    put("v2/a/cpu.max", "150000 100000\n");      // 1.5 CPUs: rounded up to 2
    CHECK(cgroup_cpu_limit(mi, "0::/a/b\n") == 2);
    CHECK(cgroup_cpu_limit(mi, "0::/a\n") == 2);
    CHECK(cgroup_cpu_limit(mi, "0::/\n") == 0);   // the root: no cpu.max at all
    put("v2/cpu.max", "100000 100000\n");        // an ancestor's smaller quota wins
    CHECK(cgroup_cpu_limit(mi, "0::/a/b\n") == 1);
    put("v2/cpu.max", "max 100000\n");
    put("v2/c/cpu.max", "max 100000\n");
    CHECK(cgroup_cpu_limit(mi, "0::/c\n") == 0);
    CHECK(cgroup_cpu_limit(mi, "0::/missing/dir\n") == 0);
    put("v2/c/cpu.max", "garbage\n");
    CHECK(cgroup_cpu_limit(mi, "0::/c\n") == 0);
    CHECK(cgroup_cpu_limit(mi, "") == 0);
    CHECK(cgroup_cpu_limit("", "0::/a\n") == 0);
}

static void test_v1(void)
{
    const char *mi = mountinfo("/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct");
    put("cpu,cpuacct/x/cpu.cfs_quota_us", "250000\n");
    put("cpu,cpuacct/x/cpu.cfs_period_us", "100000\n");
    put("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    const char *self = "12:pids:/x\n4:cpu,cpuacct:/x\n0::/x\n";
    CHECK(cgroup_cpu_limit(mi, self) == 3);
    CHECK(cgroup_cpu_limit(mi, "4:cpu,cpuacct:/\n") == 0);
    // cpuset alone is not the cpu controller
    CHECK(cgroup_cpu_limit(mountinfo("/", "cpu,cpuacct", "cgroup", "rw,cpuset"), self) == 0);
}

static void test_hybrid_and_namespace(void)
{
    char mi[4096];
    // v1 cpu quota 3 at /x, v2 quota 2 at /x: the smaller one
    put("v2/x/cpu.max", "200000 100000\n");
    snprintf(mi, sizeof mi, "%s", mountinfo("/", "v2", "cgroup2", "rw"));
    strcat(mi, mountinfo("/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct") + strlen("23 1 0:21 / /proc rw,nosuid - proc proc rw\n"));
    CHECK(cgroup_cpu_limit(mi, "4:cpu,cpuacct:/x\n0::/x\n") == 2);
    // A container: the mount shows the hierarchy from /docker/abc down.
    put("ns/cpu.max", "400000 100000\n");
    put("ns/sub/cpu.max", "300000 100000\n");
    const char *m2 = mountinfo("/docker/abc", "ns", "cgroup2", "rw");
    CHECK(cgroup_cpu_limit(m2, "0::/docker/abc/sub\n") == 3);
    CHECK(cgroup_cpu_limit(m2, "0::/docker/abc\n") == 4);
    CHECK(cgroup_cpu_limit(m2, "0::/elsewhere\n") == 4);   // outside the mount: its own files
    CHECK(cgroup_cpu_limit(m2, "0::/docker/abcd\n") == 4);  // not below /docker/abc
}

static void test_escaped_mount_point(void)
{
    put("with space/cpu.max", "100000 50000\n");
    char mi[2048];
    snprintf(mi, sizeof mi, "31 23 0:28 / %s/with\\040space rw - cgroup2 cgroup2 rw\n", top);
    CHECK(cgroup_cpu_limit(mi, "0::/\n") == 2);
}

static void test_cpus_available(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    int n = cpus_available();
    CHECK(n >= 1 && n <= CPU_COUNT(&set));
    // One CPU in the mask: one CPU available, whatever the machine has.
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) { CPU_SET(i, &one); break; }
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    CHECK(cpus_available() == 1);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

int main(void)
{
    tool_init("test-util");
    snprintf(top, sizeof top, "%s/srlm-test-util.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(top)) { perror("mkdtemp"); return 1; }
    test_v2();
    test_v1();
    test_hybrid_and_namespace();
    test_escaped_mount_point();
    test_cpus_available();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    if (system(cmd) != 0) fprintf(stderr, "test-util: could not remove %s\n", top);
    return test_finish("test-util");
}
