/*
 * Starting a supervisor in a session of its own, so it belongs to no
 * terminal and no tick. A supervisor of one attempt inherits the lease and
 * lock descriptors at fixed numbers; a resident one receives them over a
 * socket. Either way they live exactly as long as the attempt's
 * supervision does.
 */
#include "agora.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#ifndef LIBEXECDIR
#define LIBEXECDIR "/usr/local/libexec/agora"
#endif

/*
 * Where agora's helper programs are: $AGORA_LIBEXEC, then beside the
 * running program (a build tree), then ../libexec/agora from it (an
 * installed tree, even one moved after its build), then LIBEXECDIR.
 */
const char *
ag_libexec_path(const char *prog, char *buf, size_t size)
{
	const char *env = getenv("AGORA_LIBEXEC");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env && ag_path(buf, size, "%s/%s", env, prog) == 0 && access(buf, X_OK) == 0)
		return buf;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;
		self[n] = '\0';
		if ((slash = strrchr(self, '/'))) {
			*slash = '\0';
			if (ag_path(buf, size, "%s/%s", self, prog) == 0 && access(buf, X_OK) == 0)
				return buf;
			/* an installed tree, wherever it was installed: bin/../libexec/agora */
			if (ag_path(buf, size, "%s/../libexec/agora/%s", self, prog) == 0 &&
			    access(buf, X_OK) == 0)
				return buf;
		}
	}
	if (ag_path(buf, size, "%s/%s", LIBEXECDIR, prog) == 0 && access(buf, X_OK) == 0)
		return buf;
	return NULL;
}

/*
 * posix_spawn (a vfork underneath) rather than fork: the tick's process
 * may hold a large run in memory, and copying its page tables for every
 * attempt showed in profiles. The supervisor gets a new session, default
 * signal handling, /dev/null for stdio, fds[i] as fd 3 + i, and nothing
 * else. The tick reaps finished supervisors with ag_spawn_reap().
 */
static int
spawn_exec(pid_t *out, char **argv, const int *fds, size_t nfds, const char *what)
{
	extern char **environ;
	char exe[AG_PATH_MAX];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int high[AG_LOCKS_MAX + 1];
	size_t i, n = 0;
	pid_t pid;
	int rc = 0, err;

	if (!ag_libexec_path("agora-exec", exe, sizeof(exe)))
		return ag_error_set(AG_ERROR, "cannot find agora-exec (set AGORA_LIBEXEC)");
	/* copies out of the way of fds 0..3+nfds, so the dup2s cannot clash */
	for (n = 0; n < nfds; n++) {
		high[n] = fcntl(fds[n], F_DUPFD_CLOEXEC, 64 + AG_LOCKS_MAX);
		if (high[n] < 0) {
			rc = ag_error_sys(AG_ERROR, "cannot duplicate a descriptor for %s", what);
			goto close;
		}
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	for (i = 0; i < n; i++)
		posix_spawn_file_actions_adddup2(&fa, high[i], 3 + (int)i);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3 + (int)n);
	err = posix_spawn(&pid, exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (err) {
		errno = err;
		rc = ag_error_sys(AG_ERROR, "cannot start agora-exec for %s", what);
	} else if (out) {
		*out = pid;
	}
close:
	for (i = 0; i < n; i++)
		close(high[i]);
	return rc;
}

int
ag_spawn_supervisor(const char *dir, const char *run, const char *item, int attempt,
    int lease_fd, const int *lock_fds, size_t nlocks)
{
	char att[32], nl[32], what[2 * AG_ID_MAX + 2];
	char *argv[] = { "agora-exec", "-d", (char *)dir, "-l", nl, (char *)run, (char *)item,
		att, NULL };
	int fds[AG_LOCKS_MAX + 1];
	size_t i;

	if (nlocks > AG_LOCKS_MAX)
		return ag_error_set(AG_EINVALID, "too many locks for %s/%s", run, item);
	snprintf(att, sizeof(att), "%d", attempt);
	snprintf(nl, sizeof(nl), "%zu", nlocks);
	snprintf(what, sizeof(what), "%s/%s", run, item);
	fds[0] = lease_fd;
	for (i = 0; i < nlocks; i++)
		fds[i + 1] = lock_fds[i];
	return spawn_exec(NULL, argv, fds, nlocks + 1, what);
}

int
ag_spawn_resident(int *out, pid_t *pid, const char *dir)
{
	char *argv[] = { "agora-exec", "-d", (char *)dir, "-r", NULL };
	int sv[2];
	int rc;

	*out = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return ag_error_sys(AG_ERROR, "cannot make a socket for the supervisor");
	rc = spawn_exec(pid, argv, &sv[1], 1, "the resident supervisor");
	close(sv[1]);
	if (rc < 0) {
		close(sv[0]);
		return rc;
	}
	*out = sv[0];
	return 0;
}

int
ag_spawn_send(int sock, const char *run, const char *item, int attempt, const char *after,
    int after_attempt, int lease_fd, const int *lock_fds, size_t nlocks)
{
	char text[3 * AG_ID_MAX + 64];
	union {
		char buf[CMSG_SPACE(sizeof(int) * AG_SCM_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *c;
	size_t n = nlocks + 1;
	int len;

	if (n > AG_SCM_FDS_MAX)
		return ag_error_set(AG_ELOCKED, "too many locks to hand over for %s/%s", run, item);
	if (after)
		len = snprintf(text, sizeof(text), "%s %s %d %s %d", run, item, attempt, after,
		    after_attempt);
	else
		len = snprintf(text, sizeof(text), "%s %s %d", run, item, attempt);
	if (len < 0 || (size_t)len >= sizeof(text))
		return ag_error_set(AG_EINVALID, "ids too long for %s/%s", run, item);
	memset(&msg, 0, sizeof(msg));
	memset(&ctl, 0, sizeof(ctl));
	iov.iov_base = text;
	iov.iov_len = (size_t)len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), &lease_fd, sizeof(int));
	if (nlocks)
		memcpy(CMSG_DATA(c) + sizeof(int), lock_fds, sizeof(int) * nlocks);
	while (sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return ag_error_set(AG_ELOCKED, "the resident supervisor is busy");
		return ag_error_sys(AG_ERROR, "cannot reach the resident supervisor");
	}
	return 0;
}

/* A message with no descriptors: "go", or "drop RUN ITEM ATTEMPT". */
static int
send_word(int sock, const char *text, size_t len)
{
	while (send(sock, text, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		return ag_error_sys(AG_ERROR, "cannot reach the resident supervisor");
	}
	return 0;
}

int
ag_spawn_go(int sock)
{
	return send_word(sock, "go", 2);
}

int
ag_spawn_drop(int sock, const char *run, const char *item, int attempt)
{
	char text[3 * AG_ID_MAX + 64];
	int len = snprintf(text, sizeof(text), "drop %s %s %d", run, item, attempt);

	if (len < 0 || (size_t)len >= sizeof(text))
		return ag_error_set(AG_EINVALID, "ids too long for %s/%s", run, item);
	return send_word(sock, text, (size_t)len);
}

void
ag_spawn_reap(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}
