#include "agora.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "banned.h"

static const char usage[] = "agora-watch [--json] [-d dir] [-t seconds] run";

enum mode { LINES, JSON, TTY };

struct view {
	enum mode mode;
	struct ag_run *run;
	int64_t last_draw;
	int ended;	/* run.completed was shown: what follows (run.sealed) is not */
};

/* One line per event: seq, time, event, item, then the other fields as k=v. */
static void
print_line(void *arg, const char *line, size_t len, const json_t *ev)
{
	struct view *v = arg;
	const char *k, *item;
	json_t *val;

	if (v->ended)
		return;
	v->ended = v->run->completed;
	if (v->mode == JSON) {
		fwrite(line, 1, len, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	if (v->mode != LINES)
		return;
	item = json_string_value(json_object_get(ev, "item"));
	printf("%lld %s %s%s%s", (long long)json_integer_value(json_object_get(ev, "seq")),
	    json_string_value(json_object_get(ev, "at")),
	    json_string_value(json_object_get(ev, "event")), item ? " " : "", item ? item : "");
	json_object_foreach((json_t *)ev, k, val) {
		if (!strcmp(k, "seq") || !strcmp(k, "at") || !strcmp(k, "run") ||
		    !strcmp(k, "event") || !strcmp(k, "item") || !strcmp(k, "prev") ||
		    !strcmp(k, "planSha256"))
			continue;
		if (json_is_string(val) && !strpbrk(json_string_value(val), " \t\"=")) {
			printf(" %s=%s", k, json_string_value(val));
		} else {
			char *s = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
			printf(" %s=%s", k, s ? s : "?");
			free(s);
		}
	}
	putchar('\n');
	fflush(stdout);
}

static void
draw(struct view *v, int force)
{
	const struct ag_run *r = v->run;
	struct winsize ws;
	int rows = 24, cols = 80, width, filled, shown = 0;
	size_t done, i;
	int64_t now = ag_mono_ms();
	static const enum ag_status order[] = { AG_RUNNING, AG_FAILED, AG_READY, AG_PENDING,
		AG_CANCELLED, AG_SKIPPED, AG_DONE };
	size_t o;

	if (!force && now - v->last_draw < 100)
		return;
	v->last_draw = now;
	if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 5) {
		rows = ws.ws_row;
		cols = ws.ws_col;
	}
	done = r->count[AG_DONE] + r->count[AG_FAILED] + r->count[AG_SKIPPED] + r->count[AG_CANCELLED];
	width = cols - 30 > 10 ? (cols - 30 > 50 ? 50 : cols - 30) : 10;
	filled = r->nitems ? (int)((double)done / (double)r->nitems * width) : width;
	printf("\033[H\033[J%s  %s%s\n[", r->id, r->completed ? r->outcome : "running",
	    r->paused ? " (paused)" : "");
	for (i = 0; i < (size_t)width; i++)
		putchar((int)i < filled ? '#' : '.');
	printf("] %zu/%zu\n", done, r->nitems);
	for (i = 0; i < AG_NSTATUS; i++)
		printf("%s %zu%s", ag_status_names[i], r->count[i], i + 1 < AG_NSTATUS ? "  " : "\n");
	printf("\n%-32s %-10s %-7s %s\n", "ITEM", "STATE", "ATTEMPT", "REASON");
	/* the items that need attention first; the rest is summed up, never scrolled off */
	for (o = 0; o < sizeof(order) / sizeof(*order); o++)
		for (i = 0; i < r->nitems && shown < rows - 8; i++) {
			const struct ag_item *it = &r->items[i];
			if (it->status != order[o])
				continue;
			printf("%-32.32s %-10s %-7d %.*s\n", it->id, ag_status_names[it->status],
			    it->attempt, cols > 60 ? cols - 53 : 10, it->reason ? it->reason : "");
			shown++;
		}
	if ((size_t)shown < r->nitems)
		printf("... and %zu more\n", r->nitems - (size_t)shown);
	fflush(stdout);
}

static int
wait_for_run(const char *dir, const char *id, int64_t deadline)
{
	int rc;

	for (;;) {
		if ((rc = ag_run_exists(dir, id)) == 0)
			return 0;
		if (rc != AG_ENOTFOUND)
			return rc;
		if (!ag_run_queued(dir, id)) {
			/* a tick may have ingested it between the two looks */
			if (ag_run_exists(dir, id) == 0)
				return 0;
			return rc;
		}
		if (deadline && ag_mono_ms() >= deadline)
			return 1;
		poll(NULL, 0, 50);
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	char path[AG_PATH_MAX];
	struct ag_conf conf;
	struct view v = { LINES, NULL, 0, 0 };
	const char *dir = NULL, *id;
	int64_t deadline = 0, last = 0, t;
	int c, rc, in = -1, json = 0;

	ag_cli_init(argc, argv);
	while ((c = getopt_long(argc, argv, "d:ht:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'j': json = 1; break;
		case 't':
			if (ag_parse_duration_ms(&t, optarg) < 0)
				ag_usage(usage);
			deadline = ag_mono_ms() + t;
			break;
		case 'h': ag_help(usage);
		default: ag_usage(usage);
		}
	}
	if (argc - optind != 1)
		ag_usage(usage);
	id = argv[optind];
	dir = ag_state_dir(dir);
	v.mode = json ? JSON : isatty(1) ? TTY : LINES;
	if ((rc = ag_conf_load(&conf, dir)) < 0)
		ag_die(rc);
	if ((rc = wait_for_run(dir, id, deadline)) < 0)
		ag_die(rc);
	if (rc > 0)
		goto timeout;
	if ((rc = ag_run_load(&v.run, &conf, id, -1)) < 0)
		ag_die(rc);
	in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in >= 0 && ag_path(path, sizeof(path), "%s/status.jsonl", v.run->dir) == 0)
		inotify_add_watch(in, path, IN_MODIFY);
	for (;;) {
		struct pollfd p = { in, POLLIN, 0 };
		int64_t wait = 1000, since = ag_mono_ms() - last;
		/*
		 * At most 50 reads a second: a busy run appends a line every
		 * millisecond or so, and waking for each one would cost the
		 * machine more than the view is worth.
		 */
		if (last && since < 20)
			poll(NULL, 0, (int)(20 - since));
		last = ag_mono_ms();
		if ((rc = ag_run_follow(v.run, print_line, &v)) < 0)
			ag_die(rc);
		if (v.mode == TTY)
			draw(&v, v.run->completed);
		if (v.run->completed)
			break;
		if (deadline) {
			wait = deadline - ag_mono_ms();
			if (wait <= 0)
				goto timeout;
			if (wait > 1000)
				wait = 1000;
		}
		if (in >= 0 && poll(&p, 1, (int)wait) > 0) {
			char buf[4096];
			while (read(in, buf, sizeof(buf)) > 0)
				;
		} else if (in < 0) {
			poll(NULL, 0, 100);
		}
	}
	rc = strcmp(v.run->outcome, "succeeded") == 0 ? 0 : 1;
	ag_run_free(v.run);
	ag_conf_release(&conf);
	return rc;
timeout:
	ag_warn("timed out waiting for run '%s'", id);
	return 99;
}
