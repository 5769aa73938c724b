/* Starting the program in its own user + PID + mount namespace
 * (docs/protocol.md, "Launch contract").
 *
 * The supervisor clones a child into new namespaces (a fork: same memory,
 * no exec). That child is pid 1 of the namespace, "init": it mounts a
 * private /proc, starts the program (start) or the restorer with the
 * image's pid (restart) as its only child, reaps every process that ends
 * in the namespace, and when the main process ends reports its wait
 * status to the supervisor and exits, which makes the kernel kill
 * whatever is left in the namespace. */
#ifndef CKPT_COORD_LAUNCH_H
#define CKPT_COORD_LAUNCH_H

#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

/* Signal state ckpt was started with, to hand on to the program
 * unchanged (the supervisor blocks and ignores signals of its own). */
struct sig_state {
	sigset_t mask;
	unsigned char ignored[NSIG]; /* 1: SIG_IGN */
};
void sig_state_save(struct sig_state *s);
/* Put them back (what the program inherits; what ckpt started again
 * starts with). */
void sig_state_restore(const struct sig_state *s);

struct launch_spec {
	const char *path; /* executable: the program, or ckpt-restore */
	char *const *argv;
	char *const *envp; /* without CKPT_ROOT_PID: added with the real pid */
	pid_t pid;	   /* 0: any pid (start); else this exact pid (restart) */
	/* restart: the process was in a session whose leader had ended; a
	 * helper with this pid starts it and forks the process (0: none) */
	pid_t session_pid;
	int out_fd, err_fd; /* write ends of the stdout/stderr pipes */
	int keep_fd;	    /* kept open in init (the run directory's lock), or -1 */
	/* Kept in init, unused while the supervisor lives: should it die,
	 * init reads the program's output itself and appends it to
	 * application.log (docs/design.md, "Supervisor death"). -1: none. */
	int out_rd, err_rd; /* read ends of the stdout/stderr pipes */
	int app_log_fd, exec_log_fd;
	const struct sig_state *sigs;
	/* end when the first program ends (the namespace's other processes
	 * with it); otherwise init reports "main W" then and "exit W" when
	 * every process has ended */
	int exit_with_main;
	/* Set by launch(): no user/pid/mount namespaces could be made (or
	 * CKPT_NO_NAMESPACES=1): the program runs in ckpt's own, and gets new
	 * pids and tids at restart (docs/design.md). */
	int no_namespaces;
	/* restart: CLOCK_MONOTONIC and CLOCK_BOOTTIME when the program was
	 * stopped; its processes get a time namespace that goes on from them
	 * (0: the machine's clocks) */
	uint64_t monotonic_ns, boottime_ns;
};

struct launch {
	pid_t init_pid;	   /* in the supervisor's pid namespace */
	int report_fd;	   /* init -> supervisor lines: "pid N", "main W", "exit W", "err MSG" */
	int cmd_fd;	   /* supervisor -> init lines: "kill SIG", "close 1|2" */
	int no_namespaces; /* see launch_spec */
};

/* Returns 0, or -1 with a message (e.g. user namespaces disabled). On
 * success the spec's fds are still open in the caller (close them). */
int launch(struct launch_spec *spec, struct launch *out);

/* Whether launch() would give the program namespaces of its own: not
 * with CKPT_NO_NAMESPACES=1, nor where the kernel refuses them (tried
 * with a child that exits at once). */
int launch_namespaces_usable(void);

/* Init's side; never returns. Internal to launch.c and nsinit.c. */
__attribute__((noreturn)) void nsinit_main(const struct launch_spec *spec, int sync_fd,
					   int report_fd, int cmd_fd);

#endif
