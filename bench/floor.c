/*
 * floor: the least work a DAG runner can do here, as a yardstick for
 * agora's ratio to make.
 *
 *   floor [-l STATE [-m]] [-j J] DAG
 *
 * Runs bench/gen's DAG (DAG/dag.txt, "I: D1 D2" a line) with J workers,
 * each `touch out/tI` in DAG, in the order make would: an item starts
 * once its dependencies have ended, the lowest number first. Nothing is
 * parsed but dag.txt, nothing is hashed, nothing is made durable.
 *
 * With -l it also writes, under STATE, the files that agora's layout
 * (agora-state(5)) asks of every attempt, with their sizes but none of
 * their meaning: runs/r/items/I/ and I/1/, spec.json, lease, outputs/,
 * input.json, the worker's stdout and stderr, result.json through a
 * temporary file and rename(2), and one write(2) each for the item's
 * item.ready, item.running and item.done lines of status.jsonl. No
 * fsync, no JSON, no hash chain, no scheduling beyond dependencies, no
 * second process: agora does all of this and more for every item, so
 * "floor -l" over make bounds agora's ratio to make from below on this
 * machine. Without -l it is a plain C make: the spawns alone.
 *
 * With -m as well, only what the acceptance of agora's core engine names
 * for an attempt, in one directory, runs/r/items/I/: lease, stdout,
 * stderr and result.json, and the same three lines. It asks what a leaner
 * layout could win.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct item {
	int ndeps;	/* dependencies not yet ended */
	int *next;	/* the items that depend on it */
	int nnext;
	pid_t pid;
};

static struct item *items;
static int nitems;
static const char *state;	/* -l: the layout's root, else NULL */
static int minimal;		/* -m: the least layout, one directory an attempt */
static int logfd = -1;
static char fill[512];		/* 'x's and a newline: the text of every file */

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("floor: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(100);
}

/* A path into buf (4096 bytes), or die rather than cut it short. */
static void mkpath(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
mkpath(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, 4096, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= 4096)
		die("path too long: '%s...'", buf);
}

static void *
grow(void *p, size_t n, size_t size)
{
	if (!(p = realloc(p, n * size)))
		die("out of memory");
	return p;
}

static void
load(const char *dag)
{
	char path[4096], *line = NULL, *s, *end;
	size_t cap = 0;
	FILE *f;
	int i;

	mkpath(path, "%s/dag.txt", dag);
	if (!(f = fopen(path, "r")))
		die("cannot open '%s': %s", path, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		i = (int)strtol(line, &s, 10);
		if (s == line || *s != ':' || i != nitems)
			die("%s:%d: not \"I: D1 D2\"", path, nitems + 1);
		items = grow(items, (size_t)++nitems, sizeof(*items));
		memset(&items[i], 0, sizeof(items[i]));
		for (s++; ; s = end) {
			int d = (int)strtol(s, &end, 10);
			struct item *p;
			if (end == s)
				break;
			if (d < 0 || d >= i)
				die("%s:%d: dependency %d is not an earlier item", path, i + 1, d);
			p = &items[d];
			p->next = grow(p->next, (size_t)p->nnext + 1, sizeof(int));
			p->next[p->nnext++] = i;
			items[i].ndeps++;
		}
	}
	free(line);
	fclose(f);
}

/* A file of this many bytes, written the way agora writes its own. */
static int
put(const char *dir, const char *name, size_t size, int keep)
{
	char path[4096];
	int fd;

	mkpath(path, "%s/%s", dir, name);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		die("cannot create '%s': %s", path, strerror(errno));
	if (size && write(fd, fill + sizeof(fill) - size, size) != (ssize_t)size)
		die("cannot write '%s': %s", path, strerror(errno));
	if (!keep) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void
logline(size_t size)
{
	if (write(logfd, fill + sizeof(fill) - size, size) != (ssize_t)size)
		die("cannot write status.jsonl: %s", strerror(errno));
}

static void
dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die("cannot create '%s': %s", path, strerror(errno));
}

static void
attempt_dir(char *adir, int i)
{
	mkpath(adir, minimal ? "%s/runs/r/items/t%d" : "%s/runs/r/items/t%d/1", state, i);
}

static void
start(int i, const char *dag)
{
	posix_spawn_file_actions_t fa;
	char out[64], adir[4096], path[4096];
	char *argv[] = { "touch", out, NULL };
	int fds[2] = { -1, -1 }, err;

	snprintf(out, sizeof(out), "out/t%d", i);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addchdir_np(&fa, dag);
	if (state) {
		/* what serve writes, then what the supervisor writes */
		attempt_dir(adir, i);
		if (!minimal) {
			mkpath(path, "%s/runs/r/items/t%d", state, i);
			dir(path);
		}
		dir(adir);
		if (!minimal)
			put(adir, "spec.json", 285, 0);
		fds[0] = put(adir, "lease", 0, 1);
		logline(226);
		if (!minimal) {
			mkpath(path, "%s/outputs", adir);
			dir(path);
			put(adir, "input.json", 45, 0);
		}
		if (write(fds[0], "1234 5678\n", 10) != 10)
			die("cannot write the lease: %s", strerror(errno));
		close(fds[0]);
		fds[0] = put(adir, "stdout", 0, 1);
		fds[1] = put(adir, "stderr", 0, 1);
		posix_spawn_file_actions_adddup2(&fa, fds[0], 1);
		posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	}
	if ((err = posix_spawnp(&items[i].pid, "touch", &fa, NULL, argv, environ)) != 0)
		die("cannot run touch: %s", strerror(err));
	posix_spawn_file_actions_destroy(&fa);
	if (fds[0] >= 0) {
		close(fds[0]);
		close(fds[1]);
	}
}

static void
ended(int i)
{
	char adir[4096], tmp[4096], path[4096];
	int k;

	if (state) {
		attempt_dir(adir, i);
		put(adir, ".result.json.tmp", 131, 0);
		mkpath(tmp, "%s/.result.json.tmp", adir);
		mkpath(path, "%s/result.json", adir);
		if (rename(tmp, path) < 0)
			die("cannot rename '%s': %s", tmp, strerror(errno));
		logline(198);
	}
	for (k = 0; k < items[i].nnext; k++)
		if (--items[items[i].next[k]].ndeps == 0 && state)
			logline(179);	/* item.ready */
}

int
main(int argc, char **argv)
{
	int c, jobs = 2, running = 0, done = 0, lo = 0, i, k, status, *slot;
	char path[4096];
	pid_t pid;

	while ((c = getopt(argc, argv, "j:l:m")) != -1) {
		if (c == 'j')
			jobs = atoi(optarg);
		else if (c == 'l')
			state = optarg;
		else if (c == 'm')
			minimal = 1;
		else
			goto usage;
	}
	if (optind != argc - 1 || jobs < 1 || (minimal && !state))
		goto usage;
	load(argv[optind]);
	memset(fill, 'x', sizeof(fill) - 1);
	fill[sizeof(fill) - 1] = '\n';
	slot = grow(NULL, (size_t)jobs, sizeof(int));	/* the items that run */
	if (state) {
		dir(state);
		mkpath(path, "%s/runs", state);
		dir(path);
		mkpath(path, "%s/runs/r", state);
		dir(path);
		mkpath(path, "%s/runs/r/items", state);
		dir(path);
		mkpath(path, "%s/runs/r/status.jsonl", state);
		if ((logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
			die("cannot create '%s': %s", path, strerror(errno));
		for (i = 0; i < nitems; i++)
			if (items[i].ndeps == 0)
				logline(179);	/* item.ready of the first layer */
	}
	while (done < nitems) {
		/* the lowest-numbered ready items first, as many as there are workers */
		for (i = lo; i < nitems && running < jobs; i++) {
			if (items[i].ndeps == 0 && items[i].pid == 0) {
				start(i, argv[optind]);
				slot[running++] = i;
			}
		}
		while (lo < nitems && items[lo].pid != 0)
			lo++;
		if ((pid = wait(&status)) < 0)
			die("wait: %s", strerror(errno));
		for (k = 0; k < running && items[slot[k]].pid != pid; k++)
			;
		if (k == running)
			continue;
		i = slot[k];
		slot[k] = slot[--running];
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			die("touch out/t%d failed", i);
		items[i].pid = -1;	/* ended */
		done++;
		ended(i);
	}
	return 0;
usage:
	fputs("usage: floor [-l STATE [-m]] [-j J] DAG\n", stderr);
	return 100;
}
