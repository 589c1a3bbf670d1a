/*
 * agora: the internal library shared by every agora-<verb> program.
 *
 * Conventions (libgit2's): functions return 0 or a negative AG_E* code and
 * set a one-line message with ag_error_set() where the failure happens;
 * out-parameters come first and are named out; the library never prints
 * (cli.c does) and never exits.
 */
#ifndef AGORA_H
#define AGORA_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/types.h>

#include <jansson.h>

#define AG_VERSION "0.1.0"

/* error codes */
#define AG_ERROR	-1	/* temporary: I/O, memory (exit 111) */
#define AG_ENOTFOUND	-2	/* permanent: unknown run, item, file (exit 100) */
#define AG_EEXISTS	-3	/* permanent: already there (exit 100) */
#define AG_ELOCKED	-4	/* temporary: lock busy (exit 111) */
#define AG_EINVALID	-5	/* permanent: bad usage or input (exit 100) */
#define AG_ECONFLICT	-6	/* the answer is no: a patch does not apply (exit 1) */

/* limits */
#define AG_PATH_MAX		4096
#define AG_JPATH_MAX		512
#define AG_ID_MAX		128
#define AG_TIME_LEN		32
#define AG_BUF_DEFAULT_MAX	(64u << 20)
#define AG_PLAN_MAX		(64 << 20)
#define AG_ITEMS_MAX		100000
#define AG_STRING_MAX		65536
#define AG_DEPS_MAX		10000
#define AG_LOCKS_MAX		256
#define AG_SUP_FDS_MAX		AG_LOCKS_MAX	/* lock descriptors of one attempt */
#define AG_SCM_FDS_MAX		250	/* descriptors per message to a resident supervisor */
#define AG_LOCKKEY_MAX		1024
#define AG_PLAN_DEPTH_MAX	32
#define AG_PLAN_ERRORS_MAX	1000
#define AG_PRIO_MAX		1000000000
#define AG_TIMEOUT_MAX		(30 * 86400)
#define AG_LOG_MAX		((size_t)1 << 30)
#define AG_LINE_MAX		(1 << 20)
#define AG_FOLLOW_CHUNK		(4u << 20)	/* > AG_LINE_MAX: a chunk holds a line */
#define AG_CONTROL_LINE_MAX	4096
#define AG_OID_HEX		41	/* a 40-digit git object id and its NUL */
#define AG_TREE_DEPTH_MAX	256	/* directory nesting in checkouts, captures, outputs */
#define AG_PATCH_MAX		((size_t)256 << 20)	/* one captured patch */
#define AG_OUTPUTS_MAX		1000	/* files under an attempt's outputs/ */
#define AG_OUTPUTS_BYTES_MAX	((uint64_t)1 << 30)	/* their total size */

/* ---- err.c: the last error message ---- */

/* Set the message and return code, so callers write return ag_error_set(...). */
int ag_error_set(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The same, with ": strerror(errno)" appended; ENOENT turns AG_ERROR into AG_ENOTFOUND. */
int ag_error_sys(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *ag_error_msg(void);
void ag_error_clear(void);
/* Map an AG_E* code to the exit codes of DESIGN.md: 0, 1, 100 or 111. */
int ag_exit_code(int code);

/* ---- buf.c: bounded growable buffers ---- */

struct ag_buf {
	char *ptr;
	size_t len;
	size_t cap;
	size_t max;
};

void ag_buf_init(struct ag_buf *b, size_t max);
int ag_buf_grow(struct ag_buf *b, size_t extra);
int ag_buf_put(struct ag_buf *b, const void *data, size_t len);
int ag_buf_puts(struct ag_buf *b, const char *s);
int ag_buf_printf(struct ag_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void ag_buf_reset(struct ag_buf *b);
void ag_buf_release(struct ag_buf *b);
/* Hand the bytes to the caller (never NULL) and leave b empty. */
char *ag_buf_detach(struct ag_buf *b);
/* An untrusted string made printable for a message (static, 4 in rotation). */
const char *ag_quote(const char *s, size_t len);
/* jansson's message of a parse error, its control bytes as \xNN (static). */
const char *ag_json_error_text(const json_error_t *e);

/* ---- fsio.c: the write rules ---- */

int ag_path(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int ag_fsync_dir(const char *dir);
int ag_fsync_parent(const char *path);
int ag_write_all(int fd, const void *data, size_t len);
/* Temp name in the same directory, fsync, rename, fsync the directory. */
int ag_write_atomic(const char *path, const void *data, size_t len, int mode);
/* The same without the fsyncs, for files that status.jsonl makes redundant. */
int ag_write_replace(const char *path, const void *data, size_t len, int mode);
/*
 * Written in place, no temp name, no fsync: for a new attempt's files
 * that nobody reads before a later step announces them (spec.json before
 * item.running and the supervisor's message, input.json before the
 * worker starts). A crash while writing leaves a file that step never
 * announced, and the retry writes it again.
 */
int ag_write_fresh(const char *path, const void *data, size_t len, int mode);
/* O_EXCL create, write, fsync, fsync the directory (AG_EEXISTS if present). */
int ag_create_excl(const char *path, const void *data, size_t len, int mode);
/* The same, the data in n parts. */
int ag_create_excl_parts(const char *path, const struct iovec *parts, size_t n, int mode);
/* Read a whole file (or "-" for stdin) of at most max bytes. */
int ag_read_file(struct ag_buf *out, const char *path, size_t max);
/*
 * The rest of fd, at most max bytes (path names it in messages). With
 * secret set, what was read is wiped from the stack, and from out when
 * the read fails.
 */
int ag_read_fd(struct ag_buf *out, int fd, const char *path, size_t max, int secret);
int ag_mkdir(const char *path, int mode);
/* mkdir -p */
int ag_mkdir_p(const char *path, int mode);
int ag_exists(const char *path);
/* Poke agora-serve through DIR/wake; never blocks, never fails. */
void ag_wake(const char *dir);
/* The same on a descriptor kept in *fd (-1: open it) by a frequent poker. */
void ag_wake_fd(int *fd, const char *dir);
/* 1: the directory is empty or missing; 0: it has entries; -1: unreadable. */
int ag_dir_empty(const char *path);

/* ---- clock.c ---- */

int64_t ag_now_ms(void);
int64_t ag_mono_ms(void);
void ag_time_fmt(char out[AG_TIME_LEN], int64_t ms);
int ag_time_parse(int64_t *out, const char *s);

/* ---- id.c: ids and actors ---- */

/* 0 if s[0..len) is a valid id, else AG_EINVALID with a message. */
int ag_id_check(const char *s, size_t len);
int ag_id_valid(const char *s);
/* 0 if a[0..n) is a valid actor name, else AG_EINVALID with a message. */
int ag_actor_check(const char *a, size_t n);

/* ---- map.c: string -> index hash table (keys are borrowed) ---- */

struct ag_map {
	size_t cap;
	size_t len;
	const char **keys;
	size_t *vals;
};

int ag_map_init(struct ag_map *m, size_t n);
void ag_map_release(struct ag_map *m);
int ag_map_put(struct ag_map *m, const char *key, size_t val);
int ag_map_get(const struct ag_map *m, const char *key, size_t *out);

/* ---- conf.c: agora.conf ---- */

struct ag_queue {
	char *name;
	int concurrency;	/* 0 = unlimited */
	int nostage;		/* stage = false: serve stages no attempt in this queue */
};

struct ag_executor {
	char *name;
	char *kind;		/* "exec" or "dispatch" */
	char *command;		/* exec: run with sh -c when inputs give no argv or sh */
	char **passenv;
	size_t npassenv;
	char *repo;		/* dispatch: the base repository, unless inputs.repo */
	char *base;		/* dispatch: the base revision, unless inputs.base */
};

/* A program the dispatch executor runs in a worktree: [subagent "NAME"]. */
struct ag_subagent {
	char *name;
	char *command;		/* run with sh -c */
	char **passenv;
	size_t npassenv;
	int64_t timeout_ms;	/* the items' timeout unless they give one; 0 = none */
	char **slots;		/* one unit of each, for every attempt */
	size_t nslots;
	char *sandbox;		/* "none" or "bwrap" */
	int share_net;		/* network = host: bwrap keeps the host's network */
};

struct ag_slot {
	char *name;
	int capacity;
	int64_t wait_ms;	/* 0 = wait forever */
};

/* Where sealed runs' checkpoints are copied: [anchor "NAME"]. */
struct ag_anchor {
	char *name;
	char *kind;		/* "local", "dir", "git" or "command" */
	char *path;		/* dir: the directory (relative: to the state directory) */
	char *remote;		/* git: the remote's URL or path */
	char *ref;		/* git: the ref pushed; default refs/heads/agora-anchors */
	char *command;		/* command: run with sh -c, the checkpoint on stdin */
};

struct ag_conf {
	char *dir;
	int concurrency;	/* global; 0 = unlimited */
	int max_attempts;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	int64_t lease_ttl_ms;
	int64_t lease_grace_ms;
	int64_t kill_grace_ms;
	char *default_queue;
	char *porki_executor;
	char **passenv;
	size_t npassenv;
	struct ag_queue *queues;
	size_t nqueues;
	struct ag_executor *executors;
	size_t nexecutors;
	struct ag_slot *slots;
	size_t nslots;
	struct ag_subagent *subagents;
	size_t nsubagents;
	struct ag_anchor *anchors;
	size_t nanchors;
};

int ag_conf_load(struct ag_conf *c, const char *dir);
void ag_conf_release(struct ag_conf *c);
const struct ag_queue *ag_conf_queue(const struct ag_conf *c, const char *name);
const struct ag_executor *ag_conf_executor(const struct ag_conf *c, const char *name);
const struct ag_slot *ag_conf_slot(const struct ag_conf *c, const char *name);
const struct ag_subagent *ag_conf_subagent(const struct ag_conf *c, const char *name);
const struct ag_anchor *ag_conf_anchor(const struct ag_conf *c, const char *name);
/* Delay before the attempt after the given number of failures. */
int64_t ag_conf_backoff_ms(const struct ag_conf *c, int failures);
/* "1.5", "500ms", "2m", "1h" (plain numbers are seconds). */
int ag_parse_duration_ms(int64_t *out, const char *s);

/* ---- plan.c: parse and validate plans ---- */

struct ag_plan_opts {
	const char *name;	/* file name used in messages */
	const char *executor;	/* porki DAGs: the items' executor */
	const char *id;		/* overrides the run id */
	const char *queue;	/* overrides the queue */
};

/*
 * A normalized plan: the run's own fields, and its items as text, one
 * compact JSON object per line, each line ending ",\n". Only the items'
 * text is kept, so that a 100 000-item plan never sits in memory as JSON
 * values.
 */
struct ag_plan {
	json_t *head;		/* id, queue, actor, title, maxAttempts */
	struct ag_buf items;
	size_t nitems;
};

/*
 * Parse and validate a plan in either format. On failure returns
 * AG_EINVALID and appends every error to errs, one per line.
 */
int ag_plan_parse(struct ag_plan *out, struct ag_buf *errs, const struct ag_conf *conf,
    const char *text, size_t len, const struct ag_plan_opts *o);
void ag_plan_release(struct ag_plan *p);

/* ---- state.c: a run's state, rebuilt from status.jsonl ---- */

enum ag_status {
	AG_PENDING,
	AG_READY,
	AG_RUNNING,
	AG_DONE,
	AG_FAILED,
	AG_SKIPPED,
	AG_CANCELLED,
	AG_NSTATUS
};

struct ag_item_slot {
	const char *name;
	int n;
};

struct ag_item {
	const char *id;
	const char *executor;
	int64_t spec_off;	/* the item's line in plan.json (-1: parsed whole) */
	size_t spec_len;	/* its length (or its index in the whole plan) */
	size_t *deps;
	size_t ndeps;
	size_t *rdeps;		/* dependents */
	size_t nrdeps;
	const char **locks;
	size_t nlocks;
	struct ag_item_slot *slots;
	size_t nslots;
	int priority;
	int max_attempts;
	int64_t timeout_ms;	/* 0 = none */

	enum ag_status status;
	int attempt;		/* latest attempt number, 0 = never fired */
	int failures;		/* counted failed attempts since the last RETRY */
	int64_t ready_at;
	int64_t retry_at;
	int cancel_req;
	int drop_req;
	uint32_t after;		/* staged: 1 + the item whose attempt it follows, or 0 */
	int after_attempt;	/* and that item's attempt */
	pid_t sup;		/* its supervisor, as its lease last said (0: not read) */
	uint32_t pos;		/* its place in the run's ready or running list */
	uint32_t topo_pos;	/* its place in the run's topological order */
	char *reason;
	char *artifacts;	/* {resultRef, outputs} of the latest item.done, or NULL */
};

struct ag_run {
	char *id;
	char *dir;		/* runs/<id> */
	json_t *plan;		/* the plan's own fields, without its items */
	json_t *full;		/* the whole plan, only for a plan.json of another layout */
	struct ag_arena *arena;	/* the strings */
	const char *queue;
	int64_t submitted_at;
	struct ag_item *items;
	size_t nitems;
	size_t *topo;		/* item indexes, dependencies first */
	struct ag_map idx;

	/*
	 * So that a tick's cost follows what changed, not the run's size: the
	 * items ready and running, and the pending items whose dependencies
	 * changed since the last ag_sched_advance (all of them while
	 * check_all is set, as after a load).
	 */
	uint32_t *ready, *running;
	size_t nready, nrunning;
	uint32_t *check;
	size_t ncheck, check_cap;
	int check_all;
	unsigned char *scratch;	/* ag_sched_advance's, all zero between calls */
	int any_cancel_req;	/* an item-level CANCEL was ever applied */

	int want_pause;		/* from run-level PAUSE/RESUME */
	int global_paused;	/* from the global control file */
	int paused;		/* as last logged (run.paused/run.resumed) */
	int want_cancel;
	int cancelled;
	int completed;
	int64_t completed_seq;	/* the seq of run.completed: the sealed tree has seq + 1 lines */
	char completed_at[AG_TIME_LEN];	/* its at, which run.sealed repeats */
	int sealed;		/* run.sealed is logged */
	char outcome[16];
	int64_t control_off;
	int64_t global_off;
	size_t count[AG_NSTATUS];

	/* the log */
	int64_t seq;		/* next seq */
	char prev[65];
	int64_t log_size;
	int log_fd;		/* O_APPEND, only while a tick holds tick.lock */
	int dirty;		/* lines appended since the last fsync */
	int changed;
};

extern const char *const ag_status_names[AG_NSTATUS];
int ag_status_terminal(enum ag_status s);

/*
 * Load runs/<id>: the plan, then every line of status.jsonl replayed. With
 * writable set, the log is opened for appending and a torn last line (a
 * crashed writer's) is cut off; the caller must hold tick.lock.
 */
int ag_run_load(struct ag_run **out, const struct ag_conf *c, const char *id, int writable);
/* writable = -1: load the plan only; follow the log with ag_run_follow(). */
int ag_run_follow(struct ag_run *r, void (*cb)(void *, const char *, size_t, const json_t *),
    void *arg);
void ag_run_free(struct ag_run *r);
/*
 * For runs built by hand (the tests' helper): give r its ready and running
 * lists from the items' statuses, and check every item at the next
 * ag_sched_advance. r->topo must be set.
 */
int ag_run_index(struct ag_run *r);
/* Change an item's status as replaying its event would. */
void ag_run_set_status(struct ag_run *r, size_t item, enum ag_status s);
/* The item's object from plan.json, read again (its inputs are not kept). */
int ag_run_item_spec(json_t **out, const struct ag_run *r, size_t i);
/*
 * Create a plan file as plan.json lays it out: the run's fields on the
 * first line, up to "items":[, then one item per line; with count, the
 * fields hold itemCount. O_EXCL and fsync'ed, as ag_create_excl.
 */
int ag_plan_save(const char *path, const struct ag_plan *p, int count, int mode);
/* v as one compact line with its newline (malloc'ed), or NULL when out of memory. */
char *ag_json_line(const json_t *v);
/* The same, and the SHA-256 (hex) of the bytes written into sha. */
int ag_plan_save_sum(const char *path, const struct ag_plan *p, int count, int mode,
    char sha[65]);
int ag_run_item(const struct ag_run *r, const char *id, size_t *out);
/* Apply one parsed event to the in-memory state. */
void ag_run_apply(struct ag_run *r, const json_t *ev);
/* A new event object with seq, at, run and event set, in that order. */
json_t *ag_event_new(const struct ag_run *r, const char *event);
/* Append ev (which this steals) to status.jsonl with its prev, then apply it. */
int ag_run_emit(struct ag_run *r, json_t *ev);
int ag_run_sync(struct ag_run *r);
/* Write runs/<id>/state.json, the snapshot cache. */
int ag_run_snapshot(struct ag_run *r);
json_t *ag_run_summary(const struct ag_run *r, int with_items);

/* ---- sched.c: pure scheduling decisions, no I/O ---- */

enum ag_action_kind {
	AG_ACT_READY,
	AG_ACT_SKIP,
	AG_ACT_FIRE,
	AG_ACT_FAIL,
	AG_ACT_WAIT,
	AG_ACT_STAGE
};

struct ag_action {
	enum ag_action_kind kind;
	struct ag_run *run;
	size_t item;
	char reason[256];
	char blocked_by[AG_ID_MAX * 2 + 2];	/* run/item or item */
	int64_t until;		/* a WAIT that ends by itself: when to look again */
	size_t after;		/* a STAGE: the running item whose slot it takes when it ends */
};

struct ag_actions {
	struct ag_action *v;
	size_t len;
	size_t cap;
};

void ag_actions_release(struct ag_actions *a);
/*
 * Pending items that become ready, or skipped (transitively), in
 * topological order. It looks at the run's check list, or at every item
 * while check_all is set, and empties the list.
 */
int ag_sched_advance(struct ag_actions *out, struct ag_run *r);
/*
 * Which ready items fire now, in fire order, across all active runs; the
 * others get a WAIT (or a FAIL for a slot wait timeout) saying why. With
 * stage set to the pid of serve's resident supervisor (which can start an
 * attempt the moment another ends), an item that only a full queue holds
 * back, in a queue with stage on, may get a STAGE instead: it fires now,
 * holding its locks and slots, and starts when the item named in after,
 * which that supervisor runs, ends.
 */
int ag_sched_pick(struct ag_actions *out, struct ag_run **runs, size_t nruns,
    const struct ag_conf *c, int64_t now, pid_t stage);
/*
 * A staged attempt that has not taken its place yet: the attempt it
 * follows still runs. It counts for no concurrency, but it holds its
 * locks and slots.
 */
int ag_item_staged(const struct ag_run *r, const struct ag_item *it);
/* Why a pending item waits ("dependency 'x' (running)"). */
void ag_sched_pending_reason(char *out, size_t size, const struct ag_run *r, size_t item);

/* ---- control.c: the control files ---- */

enum ag_verb {
	AG_V_PAUSE,
	AG_V_RESUME,
	AG_V_CANCEL,
	AG_V_RETRY,
	AG_V_DROP,
	AG_V_ELEVATE,
	AG_V_UNKNOWN
};

struct ag_directive {
	enum ag_verb verb;
	char verb_name[32];
	char item[AG_ID_MAX + 1];
	long priority;
	char actor[AG_ID_MAX + 1];
	char error[256];	/* non-empty: the line is malformed */
};

/* Parse one line; returns 1 for a directive, 0 for a blank or comment. */
int ag_directive_parse(struct ag_directive *out, const char *line, size_t len);
const char *ag_verb_name(enum ag_verb v);
int ag_verb_parse(const char *s, enum ag_verb *out);
/* Append one directive line to a control file in one write(2). */
int ag_control_append(const char *path, const char *line);

/* ---- hash.c ---- */

int ag_sha256_hex(char out[65], const void *data, size_t len);
/* The same over the bytes of n parts, one after the other. */
int ag_sha256_hex_parts(char out[65], const struct iovec *parts, size_t n);

/* ---- lock.c ---- */

/* The file name under locks/ for a lock key. */
int ag_lock_filename(char *out, size_t size, const char *key);

/* Open (creating) a lock file and flock it; AG_ELOCKED if busy and nonblock. */
int ag_lock_open(int *out, const char *path, int nonblock);
/* 1 if someone holds a flock on path, 0 if free (or missing). */
int ag_lock_held(const char *path);

/* ---- reconcile.c: the tick ---- */

struct ag_tick_opts {
	int nonblock;		/* -n: AG_ELOCKED when another tick runs */
	int quiet;
	/*
	 * serve's socket to its resident supervisor, or NULL: attempts go
	 * there instead of to an agora-exec each. When the supervisor is
	 * gone, the tick closes the socket and sets *sup to -1.
	 */
	int *sup;
	pid_t sup_pid;		/* and its pid */
	/*
	 * serve's inotify saw no change there since the last tick: the
	 * tick need not list inbox/new, or active/ (it keeps the runs it
	 * cached, unless the last tick ingested or let go of one).
	 */
	int skip;
};
#define AG_SKIP_INBOX	1
#define AG_SKIP_ACTIVE	2

struct ag_tick_stats {
	int ingested;
	int rejected;
	int fired;
	int reaped;
	int completed;
	int events;
	int64_t next_at;	/* the earliest backoff gate, or 0: when to tick again */
};

struct ag_tick_cache;

/*
 * 1 when a tick would have nothing to do: no plan in inbox/new, no active
 * run, no checkpoint owed to an anchor (idle.c, which needs nothing but
 * libc, so that agora-reconcile can answer without loading libgit2).
 */
int ag_tick_idle(const char *dir);
int ag_tick(struct ag_tick_stats *out, const char *dir, const struct ag_tick_opts *o,
    struct ag_tick_cache **cache);
void ag_tick_cache_free(struct ag_tick_cache *c);

/* ---- crash points (tests only) ---- */

/* If AGORA_TEST_CRASH names this point, die here with SIGKILL. */
void ag_crash_point(const char *name);

/* ---- spawn.c: start a supervisor ---- */

/*
 * Start agora-exec for one attempt in a session of its own, with the lease
 * descriptor as fd 3 and the lock descriptors from fd 4 on.
 */
int ag_spawn_supervisor(const char *dir, const char *run, const char *item, int attempt,
    int lease_fd, const int *lock_fds, size_t nlocks);
const char *ag_libexec_path(const char *prog, char *buf, size_t size);
/* Collect the exit status of supervisors that have ended (never blocks). */
void ag_spawn_reap(void);
/*
 * Start a resident supervisor (agora-exec -r) in a session of its own;
 * *out is serve's end of the socket that feeds it attempts, *pid its pid.
 */
int ag_spawn_resident(int *out, pid_t *pid, const char *dir);
/*
 * Hand one attempt, with its lease and lock descriptors, to a resident
 * supervisor; a staged one names the attempt of the same run (after,
 * after_attempt) whose end starts it. AG_ELOCKED: the socket is full,
 * try another way; AG_ERROR: the supervisor is gone.
 */
int ag_spawn_send(int sock, const char *run, const char *item, int attempt, const char *after,
    int after_attempt, int lease_fd, const int *lock_fds, size_t nlocks);
/*
 * The attempts sent so far are durable intents now: start them (a staged
 * one when the attempt it follows has ended). Until then a resident
 * supervisor only prepares them (their files, the worker's argv and
 * environment), and it drops them, unstarted, when the socket closes
 * first.
 */
int ag_spawn_go(int sock);
/*
 * Drop a staged attempt that has not started: its lease is let go with
 * no worker named in it, so the next tick calls it "not started". One
 * that started already is left alone.
 */
int ag_spawn_drop(int sock, const char *run, const char *item, int attempt);

/* ---- exec.c: the supervisor ---- */

/* A tick cancels one attempt: sigqueue() to its supervisor, the worker's pid as value. */
#define AG_SIG_CANCEL		(SIGRTMIN + 1)

/* Supervise one attempt: the lease is fd 3, the locks fds 4 .. 3 + nlocks. */
int ag_exec_attempt(const char *dir, const char *run, const char *item, int attempt,
    size_t nlocks);
/* Supervise the attempts that arrive on sock until it closes and all have ended. */
int ag_exec_resident(const char *dir, int sock);

/* ---- sandbox.c: sandbox = bwrap ---- */

/* What a sandboxed worker is given; every path absolute. */
struct ag_sandbox {
	const char *state;	/* the state directory: hidden behind an empty tmpfs */
	const char *worktree;	/* read-write, the cwd */
	const char *outputs;	/* read-write */
	const char *input;	/* read-only: the file AGORA_INPUT names */
	const char *inputs;	/* read-only: AGORA_INPUTS_DIR, or NULL */
	int share_net;		/* keep the host's network namespace */
	int status_fd;		/* bwrap's --json-status-fd in the worker, or -1 */
};

/*
 * *out: the argv that runs argv under bwrap (the program at path bwrap)
 * in the sandbox that sb describes. It is one allocation: free() it.
 */
int ag_sandbox_argv(char ***out, const char *bwrap, const struct ag_sandbox *sb,
    char *const *argv);

/* ---- submit.c: inbox delivery ---- */

struct ag_submit_opts {
	const char *file;
	const char *actor;
	struct ag_plan_opts plan;
};

/* Validate, then deliver into inbox/; *out is the run id. */
int ag_submit(char **out, struct ag_buf *errs, const char *dir, const struct ag_submit_opts *o);

/* "human:<login name>", the actor when none is given. */
int ag_default_actor(char *out, size_t size);

/* ---- store.c: the git object store, objects.git ---- */

struct ag_store;

/*
 * libgit2, set up once per process: fsync of the gitdir on, and no system,
 * global or XDG git configuration read, so ~/.gitconfig changes nothing.
 */
void ag_git_setup(void);
/* Open the bare repository at path (DIR/objects.git). */
int ag_store_open(struct ag_store **out, const char *path);
void ag_store_free(struct ag_store *s);
const char *ag_store_path(const struct ag_store *s);
/* "refs/agora/runs/<run>/<item>", with the bytes git refuses in ref names as %XX. */
int ag_store_run_ref(char *out, size_t size, const char *run, const char *item);
/*
 * Resolve rev (a branch, tag, commit id) in the repository at repo and
 * fetch that commit with its history into the store, as
 * refs/agora/bases/<id>: from then on nothing depends on repo. Nothing of
 * repo's is run: libgit2's local transport reads its objects in-process.
 * out is the commit id. AG_ENOTFOUND for a missing repository or base.
 */
int ag_store_import_base(char out[AG_OID_HEX], struct ag_store *s, const char *repo,
    const char *rev);
/*
 * Write the files of a commit or tree into dir (created if missing; it must
 * be empty), byte for byte: no filter, attribute, end-of-line rule or
 * configuration applies. Files get mode 0644 or 0755, symbolic links are
 * made with symlink(2), a submodule is an empty directory. Entries named
 * "", ".", "..", ".git" (in any case) or holding '/' are refused.
 */
int ag_store_checkout(struct ag_store *s, const char *treeish, const char *dir);
/*
 * The tree of a directory, read with lstat: regular files (0755 when the
 * owner may execute them, else 0644), symbolic links (their target), and
 * subdirectories with something in them. Entries named .git are left out.
 * An empty directory where baseline (a tree or commit, or NULL) has a
 * submodule keeps the submodule.
 */
int ag_store_tree_from_dir(char out[AG_OID_HEX], struct ag_store *s, const char *dir,
    const char *baseline);

struct ag_capture_opts {
	const char *base;	/* the base commit: the result commit's parent */
	const char *baseline;	/* the tree the patch is taken from; NULL: base's tree */
	const char *run;
	const char *item;
	int attempt;
	int64_t time_ms;	/* of the result commit */
};

struct ag_capture {
	char base[AG_OID_HEX];
	char baseline[AG_OID_HEX];	/* the tree the patch applies to */
	char tree[AG_OID_HEX];		/* the directory's tree */
	char patch[AG_OID_HEX];		/* the patch blob; "" when nothing changed */
	char sha256[65];		/* of the patch's bytes; "" when nothing changed */
	size_t patch_len;
	char commit[AG_OID_HEX];	/* the result commit; "" when nothing changed */
};

/*
 * What changed in dir since the baseline: its tree, the patch from the
 * baseline to it (git diff --binary with renames, byte-exact) stored as a
 * blob, and a commit of the tree (parent base, author and committer
 * "agora <agora@localhost>" at time_ms, message "<run>/<item> attempt N")
 * set as refs/agora/runs/<run>/<item>. When nothing changed there is no
 * patch, no commit and no ref update.
 */
int ag_store_capture(struct ag_capture *out, struct ag_store *s, const char *dir,
    const struct ag_capture_opts *o);
/* A blob's bytes (at most max of them). */
int ag_store_read_blob(struct ag_buf *out, struct ag_store *s, const char *id, size_t max);
/*
 * Apply a patch blob to a tree (or a commit's tree); out is the new tree.
 * AG_ECONFLICT when the patch does not apply.
 */
int ag_store_apply(char out[AG_OID_HEX], struct ag_store *s, const char *treeish,
    const char *patch);
/*
 * A worktree for a needs handoff: base (a commit or tree) with the patches
 * applied in order, checked out into dir; out is that baseline tree. When
 * a patch does not apply (AG_ECONFLICT), *failed is its index.
 */
int ag_store_worktree(char out[AG_OID_HEX], size_t *failed, struct ag_store *s,
    const char *base, const char *const *patches, size_t npatches, const char *dir);

struct ag_output {
	char *path;		/* relative to the outputs directory */
	char blob[AG_OID_HEX];
	uint64_t size;
};

/*
 * The regular files under dir (in subdirectories too) as blobs, sorted by
 * path; a missing dir has none. Symbolic links, other file types, names
 * that are not printable UTF-8, more than AG_OUTPUTS_MAX files or
 * AG_OUTPUTS_BYTES_MAX bytes are refused (AG_EINVALID).
 */
int ag_store_outputs(struct ag_output **out, size_t *nout, struct ag_store *s, const char *dir);
void ag_outputs_free(struct ag_output *v, size_t n);

/* ---- artifact.c: what items produced, as item.done records it ---- */

/*
 * The artifact fields of an item.done line, added to ev: "base" (the base
 * commit), "resultRef" ("git:<patch blob>") and "patchSha256" when the
 * item changed something, and "outputs" ([{"path", "ref": "git:<blob>",
 * "size"}]) when it wrote any. c may be NULL.
 */
int ag_artifact_fields(json_t *ev, const struct ag_capture *c, const struct ag_output *o,
    size_t n);

struct ag_artifacts {
	struct ag_run *run;
	json_t **done;		/* by item index: its latest item.done line, or NULL */
};

/* Load a run and the latest item.done line of each of its items. */
int ag_artifacts_load(struct ag_artifacts *out, const struct ag_conf *c, const char *run);
void ag_artifacts_release(struct ag_artifacts *a);

enum ag_show_what {
	AG_SHOW_PATCH,		/* the patch of the latest done attempt (nothing if none) */
	AG_SHOW_LOG,		/* the latest attempt's stdout to outfd, its stderr to errfd */
	AG_SHOW_RESULT,		/* the latest attempt's result.json */
	AG_SHOW_OUTPUTS		/* "BLOB SIZE PATH" lines of the latest done attempt */
};

/* Write what an item produced to outfd (and errfd). */
int ag_show(const struct ag_conf *c, const char *run, const char *item, enum ag_show_what what,
    int outfd, int errfd);

struct ag_apply_opts {
	const char *repo;	/* the target repository */
	const char *branch;	/* the new branch; NULL: agora/<run> */
};

struct ag_applied {
	char item[AG_ID_MAX + 1];
	char commit[AG_OID_HEX];
};

/*
 * Apply the patch of every done item of a run, dependencies first, to the
 * base commit of the first, one commit per item, and create the new branch
 * there. All is computed in objects.git first: when a patch does not apply
 * (AG_ECONFLICT, the message names the item) the target is left as it was.
 * Its working tree and index are never touched.
 */
int ag_apply_run(struct ag_applied **out, size_t *nout, const struct ag_conf *c, const char *run,
    const struct ag_apply_opts *o);

/* ---- replicate.c: agora-replicate ---- */

/*
 * Copy the state tree dir to dest (a path, or rsync's [user@]host:path)
 * with rsync: read checkpoints, logs, objects in that order, write them
 * the other way round, so that the replica is whole at every step;
 * immutable files are never overwritten there, logs only grow, nothing
 * is deleted but what active/ no longer lists. Locks, temporary files,
 * worktrees and the private key are not copied.
 */
int ag_replicate(const char *dir, const char *dest);

/* ---- init.c ---- */

int ag_init(const char *dir);

/* ---- state directory helpers ---- */

/* The state directory from -d, $AGORA_DIR or ".". */
const char *ag_state_dir(const char *opt);
/* AG_ENOTFOUND "unknown run" unless runs/<id> exists. */
int ag_run_exists(const char *dir, const char *id);
/* 1 if a plan for this run id waits in inbox/new. */
int ag_run_queued(const char *dir, const char *id);

/* ---- cli.c: the only place that prints errors or exits ---- */

extern const char *ag_prog;
/* The program's name (for messages) from argv[0]; then, for JSON, a fixed hash seed. */
void ag_cli_name(int argc, char **argv);
void ag_cli_init(int argc, char **argv);
/* Print "prog: message" and exit with the code's exit status. */
void ag_die(int code) __attribute__((noreturn));
/* Print the usage line to stderr and exit 100. */
void ag_usage(const char *usage) __attribute__((noreturn));
/* -h: print the usage line to stdout and exit 0. */
void ag_help(const char *usage) __attribute__((noreturn));
void ag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
