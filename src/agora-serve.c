#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <dirent.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-serve [-v] [-d dir] [-i seconds]";

struct watches {
	int fd;
	int inbox;		/* the watch on inbox/new */
	int active;		/* the watch on active/ */
	int rescan;		/* active/ changed: watch the new runs' control files */
	int changed;		/* AG_SKIP_* bits of what changed since the last tick */
	const char *dir;
};

/* Watch the inbox, the global control file, active/ and each active run's control file. */
static void
rewatch(struct watches *w)
{
	char path[AG_PATH_MAX];

	if (ag_path(path, sizeof(path), "%s/inbox/new", w->dir) == 0)
		w->inbox = inotify_add_watch(w->fd, path, IN_MOVED_TO | IN_CREATE);
	if (ag_path(path, sizeof(path), "%s/control", w->dir) == 0)
		inotify_add_watch(w->fd, path, IN_MODIFY);
	if (ag_path(path, sizeof(path), "%s/active", w->dir) == 0)
		w->active = inotify_add_watch(w->fd, path, IN_CREATE | IN_DELETE);
	w->rescan = 1;
	w->changed = AG_SKIP_INBOX | AG_SKIP_ACTIVE;
}

static void
watch_run(struct watches *w, const char *id)
{
	char path[AG_PATH_MAX];

	if (ag_path(path, sizeof(path), "%s/runs/%s/control", w->dir, id) == 0)
		inotify_add_watch(w->fd, path, IN_MODIFY);
}

static void
watch_active(struct watches *w)
{
	char path[AG_PATH_MAX];
	DIR *d;
	struct dirent *e;

	if (!w->rescan)
		return;
	w->rescan = 0;
	if (ag_path(path, sizeof(path), "%s/active", w->dir) < 0 || !(d = opendir(path)))
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			watch_run(w, e->d_name);
	closedir(d);
}

static void
drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/*
 * Read the events; one about active/ (or a lost one) means a rescan, and
 * that the next tick lists active/; one about inbox/new, that it lists
 * the inbox.
 */
static void
drain_events(struct watches *w)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		char *p = buf;
		while (p + sizeof(struct inotify_event) <= buf + n) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if (ev->wd == w->active || (ev->mask & IN_Q_OVERFLOW)) {
				w->rescan = 1;
				w->changed |= AG_SKIP_ACTIVE;
			}
			if (ev->wd == w->inbox || (ev->mask & IN_Q_OVERFLOW))
				w->changed |= AG_SKIP_INBOX;
			p += sizeof(*ev) + ev->len;
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ag_tick_cache *cache = NULL;
	struct ag_tick_opts o = { 0 };
	struct ag_tick_stats st;
	struct watches w;
	struct pollfd pfd[4];
	char path[AG_PATH_MAX];
	const char *dir = NULL;
	int64_t interval = 5000;
	sigset_t set;
	int c, rc, sfd, wake_r, wake_w, verbose = 0, stop = 0, sup = -1;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:hi:v", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'i':
			if (ag_parse_duration_ms(&interval, optarg) < 0 || interval < 10)
				ag_usage(usage);
			break;
		case 'v': verbose = 1; break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (optind != argc)
		ag_usage(usage);
	dir = ag_state_dir(dir);
	w.dir = dir;
	w.active = w.inbox = -1;
	w.rescan = 1;

	/* TERM and INT wait for the tick in progress; running attempts are left alone */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	w.fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ag_path(path, sizeof(path), "%s/wake", dir) < 0)
		ag_die(AG_EINVALID);
	wake_r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	/* our own writer keeps the FIFO from reporting end-of-file forever */
	wake_w = wake_r >= 0 ? open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1;
	if (sfd < 0 || w.fd < 0) {
		ag_error_sys(AG_ERROR, "cannot set up events");
		ag_die(AG_ERROR);
	}
	rewatch(&w);
	o.sup = &sup;
	while (!stop) {
		int64_t timeout = interval;

		/*
		 * One resident supervisor runs this serve's attempts; without
		 * it, each attempt gets an agora-exec of its own.
		 */
		if (sup < 0 && ag_spawn_resident(&sup, &o.sup_pid, dir) < 0)
			ag_warn("%s", ag_error_msg());
		/* a tick lists only what inotify saw change, or everything at the backstop */
		o.skip = ~w.changed & (AG_SKIP_INBOX | AG_SKIP_ACTIVE);
		w.changed = 0;
		rc = ag_tick(&st, dir, &o, &cache);
		if (rc < 0) {
			ag_warn("%s", ag_error_msg());
			if (ag_exit_code(rc) == 100)
				return 100;
		} else if (rc > 0) {
			ag_warn("%s", ag_error_msg());
		}
		if (verbose && rc >= 0 && (st.ingested || st.fired || st.reaped || st.completed))
			fprintf(stderr, "%s: ingested %d, reaped %d, fired %d, completed %d\n",
			    ag_prog, st.ingested, st.reaped, st.fired, st.completed);
		if (rc >= 0 && st.ingested)
			w.rescan = 1;
		watch_active(&w);
		if (st.next_at) {
			int64_t until = st.next_at - ag_now_ms();
			if (until < timeout)
				timeout = until < 0 ? 0 : until;
		}
		pfd[0].fd = sfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = w.fd;
		pfd[1].events = POLLIN;
		pfd[2].fd = wake_r;
		pfd[2].events = POLLIN;
		/* a resident supervisor that dies hangs up: the next tick looks at its leases */
		pfd[3].fd = sup;
		pfd[3].events = 0;
		rc = poll(pfd, sup >= 0 ? 4 : 3, (int)timeout);
		if (rc < 0 && errno != EINTR) {
			ag_error_sys(AG_ERROR, "poll");
			ag_die(AG_ERROR);
		}
		if (rc == 0)
			w.changed = AG_SKIP_INBOX | AG_SKIP_ACTIVE;
		if (pfd[0].revents & POLLIN)
			stop = 1;
		if (pfd[1].revents & POLLIN)
			drain_events(&w);
		if (pfd[2].revents & POLLIN)
			drain(wake_r);
	}
	ag_tick_cache_free(cache);
	/* the resident supervisor sees the socket close, finishes its attempts and goes */
	if (sup >= 0)
		close(sup);
	if (wake_w >= 0)
		close(wake_w);
	if (wake_r >= 0)
		close(wake_r);
	return 0;
}
