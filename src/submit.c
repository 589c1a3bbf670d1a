/*
 * agora-submit: validate, then deliver into inbox/ maildir-style: write
 * tmp/NAME, fsync, rename to new/NAME, fsync new/. Submitters take
 * inbox/.lock so that two of them cannot both claim one run id.
 */
#include "agora.h"

#include <dirent.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "banned.h"

int
ag_run_exists(const char *dir, const char *id)
{
	char path[AG_PATH_MAX];
	int rc;

	if ((rc = ag_id_check(id, strlen(id))) < 0)
		return rc;
	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s/plan.json", dir, id)) < 0)
		return rc;
	if (!ag_exists(path))
		return ag_error_set(AG_ENOTFOUND, "unknown run '%s'", id);
	return 0;
}

/* Is a plan for this run id waiting in inbox/new? Names are "SEC.USEC.PID,ID". */
int
ag_run_queued(const char *dir, const char *id)
{
	char path[AG_PATH_MAX];
	struct dirent *e;
	DIR *d;
	int found = 0;

	if (ag_path(path, sizeof(path), "%s/inbox/new", dir) < 0 || !(d = opendir(path)))
		return 0;
	while (!found && (e = readdir(d))) {
		const char *comma = strchr(e->d_name, ',');
		found = comma && strcmp(comma + 1, id) == 0;
	}
	closedir(d);
	return found;
}

int
ag_default_actor(char *out, size_t size)
{
	struct passwd *pw = getpwuid(geteuid());
	const char *user = pw ? pw->pw_name : getenv("USER");

	snprintf(out, size, "human:%s", user && *user ? user : "unknown");
	return 0;
}

int
ag_submit(char **out, struct ag_buf *errs, const char *dir, const struct ag_submit_opts *o)
{
	char path[AG_PATH_MAX], tmp[AG_PATH_MAX], name[AG_ID_MAX + 64], actor[AG_ID_MAX + 16];
	struct ag_conf conf;
	struct ag_buf text = { 0 };
	struct timeval tv;
	struct ag_plan plan = { 0 };
	const char *id;
	int rc, lockfd = -1;

	*out = NULL;
	if ((rc = ag_conf_load(&conf, dir)) < 0)
		return rc;
	/* a plan too big to read is one more invalid plan, said like the others */
	if ((rc = ag_read_file(&text, o->file, (size_t)AG_PLAN_MAX + 1)) == AG_EINVALID) {
		ag_buf_printf(errs, "%s: plan is larger than the limit of %d bytes\n",
		    o->plan.name, AG_PLAN_MAX);
		rc = ag_error_set(AG_EINVALID, "invalid plan '%s'", o->plan.name);
		goto out;
	} else if (rc < 0) {
		goto out;
	}
	if ((rc = ag_plan_parse(&plan, errs, &conf, text.ptr, text.len, &o->plan)) < 0) {
		if (rc == AG_EINVALID)
			ag_error_set(AG_EINVALID, "invalid plan '%s'", o->plan.name);
		goto out;
	}
	/* --actor wins over the plan's own "actor", which ag_plan_parse checked */
	if (o->actor) {
		if ((rc = ag_actor_check(o->actor, strlen(o->actor))) < 0)
			goto out;
		json_object_set_new(plan.head, "actor", json_string(o->actor));
	} else if (!json_object_get(plan.head, "actor")) {
		ag_default_actor(actor, sizeof(actor));
		json_object_set_new(plan.head, "actor", json_string(actor));
	}
	if (!json_object_get(plan.head, "id")) {
		unsigned char rnd[3];
		char gen[64];
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			rc = ag_error_set(AG_ERROR, "no randomness for a run id");
			goto out;
		}
		snprintf(gen, sizeof(gen), "run-%04d%02d%02d-%02d%02d%02d-%02x%02x%02x",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec, rnd[0], rnd[1], rnd[2]);
		json_object_set_new(plan.head, "id", json_string(gen));
	}
	id = json_string_value(json_object_get(plan.head, "id"));

	if ((rc = ag_path(path, sizeof(path), "%s/inbox/.lock", dir)) < 0 ||
	    (rc = ag_lock_open(&lockfd, path, 0)) < 0)
		goto out;
	/*
	 * Look in inbox/new before runs/: ingest creates runs/<id> before it
	 * moves the plan out of inbox/new, so one of the two always shows it.
	 */
	if (ag_run_queued(dir, id)) {
		rc = ag_error_set(AG_EEXISTS, "run '%s' is already waiting in the inbox; "
		    "choose another id with --id", id);
		goto out;
	}
	if ((rc = ag_path(path, sizeof(path), "%s/runs/%s", dir, id)) < 0)
		goto out;
	if (ag_exists(path)) {
		rc = ag_error_set(AG_EEXISTS, "run '%s' already exists; choose another id with --id", id);
		goto out;
	}
	gettimeofday(&tv, NULL);
	snprintf(name, sizeof(name), "%010lld.%06ld.%ld,%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), id);
	if ((rc = ag_path(tmp, sizeof(tmp), "%s/inbox/tmp/%s", dir, name)) < 0 ||
	    (rc = ag_path(path, sizeof(path), "%s/inbox/new/%s", dir, name)) < 0 ||
	    (rc = ag_plan_save(tmp, &plan, 0, 0644)) < 0)
		goto out;
	if (rename(tmp, path) < 0) {
		rc = ag_error_sys(AG_ERROR, "cannot deliver '%s'", path);
		unlink(tmp);
		goto out;
	}
	if ((rc = ag_fsync_parent(path)) < 0)
		goto out;
	ag_wake(dir);
	if (!(*out = strdup(id)))
		rc = ag_error_set(AG_ERROR, "out of memory");
out:
	if (lockfd >= 0)
		close(lockfd);
	ag_plan_release(&plan);
	ag_buf_release(&text);
	ag_conf_release(&conf);
	return rc;
}
