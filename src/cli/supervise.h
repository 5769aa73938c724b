/* What start and restart share once the run directory is ready: the
 * control socket, the output pipes, the signals, the launch into new
 * namespaces, and then the coordinator loop until the program ends. */
#ifndef CKPT_CLI_SUPERVISE_H
#define CKPT_CLI_SUPERVISE_H

#include <sys/types.h>

#include "cli/options.h"
#include "coord/coord.h"

struct supervise_args {
	int lockfd;	       /* kept open by the namespace's init too */
	const char *exec_path; /* the program, or the restorer */
	char *const *argv;
	pid_t pid;			    /* 0, or the exact pid at restart */
	pid_t session_pid;		    /* restart: the session to create first, 0 none */
	const char *preload;		    /* the agent (start), NULL (restart) */
	const struct run_opts *opts;	    /* checkpoint signal, Slurm options */
	uint64_t monotonic_ns, boottime_ns; /* restart: the clocks at the stop, or 0 */
	/* Filled by the caller except listen_fd, sig_fd, out_fd, err_fd and
	 * launch, which supervise sets up. */
	struct coord_opts *co;
};

/* Returns ckpt's exit status, or -1 with a message when the program could
 * not be launched (nothing ran). */
int supervise(struct supervise_args *a);

/* --requeue and --before-limit need a Slurm job: a one-line refusal
 * otherwise, before anything is created. */
int batch_opts_check(const struct run_opts *o);

/* Open execution.log, coordinator.log and application.log of dirfd into
 * co. */
int open_logs(struct coord_opts *co, struct ckpt_log *exec_log, struct ckpt_log *coord_log);
void close_logs(struct coord_opts *co);

#endif
