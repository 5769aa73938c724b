#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char overview[] =
    "usage: ckpt COMMAND [ARGS...]\n"
    "\n"
    "Transparent checkpoint/restart of a running Linux program, in user space.\n"
    "\n"
    "  ckpt start   [options] [--] PROGRAM|script.py [ARGS...]   run under checkpointing\n"
    "  ckpt restart [options] [--] PROGRAM|script.py [ARGS...]   resume from the last checkpoint\n"
    "  ckpt run     [options] [--] PROGRAM|script.py [ARGS...]   start, or resume if there is a\n"
    "                             checkpoint (for job scripts: call it again and again)\n"
    "  ckpt checkpoint RUNDIR     checkpoint now; prints the generation when it is durable\n"
    "  ckpt status [RUNDIR]       state, pid, last checkpoint, next one due\n"
    "  ckpt verify RUNDIR [--generation N]   check the checkpoint images, change nothing\n"
    "  ckpt --version\n"
    "  ckpt COMMAND --help        details of one command\n";

static const char start_help[] =
    "usage: ckpt start [options] [--] PROGRAM|script.py [ARGS...]\n"
    "\n"
    "Runs the program under checkpointing, in the foreground, as its supervisor.\n"
    "The first argument that is not an option below is the program (or use --);\n"
    "everything after it is passed to the program untouched. A .py script runs\n"
    "under python3 from PATH; anything else is found through PATH like a shell.\n"
    "Only dynamically linked x86-64 programs can be checkpointed.\n"
    "\n"
    "options:\n"
    "  --id ID, -id ID         add ID to the run directory's name (ID_...)\n"
    "  --interval SEC, -i SEC  checkpoint every SEC seconds, counted from the end of\n"
    "                          the last checkpoint (default 20; 0: only on request)\n"
    "  --stop-after-checkpoint stop the program after its first checkpoint\n"
    "                          (resume it with ckpt restart)\n"
    "  --compress auto|none|fast|max  zstd level of the images (default auto: fast,\n"
    "                          and pages stored as they are while the disk waits)\n"
    "  --full-every N          every Nth checkpoint is full, the others store only\n"
    "                          the pages changed since the one before (default 8;\n"
    "                          1: all full)\n"
    "  --no-cow                write images while the program is stopped, instead\n"
    "                          of from a copy-on-write snapshot while it runs on\n"
    "  --exit-with-main        end when the first program ends, ending the rest\n"
    "                          (default: run until every process it started ends)\n"
    "  --python PATH           the python for .py scripts (default: python3 in PATH)\n"
    "  --dir DIR               put the run directory in DIR (default: here)\n"
    "  --keep N                keep the N newest intact checkpoints (default 2);\n"
    "                          older ones go only after a newer one is complete\n"
    "\n"
    "The run directory is named ID_PROGRAM_ARG1_ARG2... (PROGRAM without .py); when\n"
    "an argument holds characters other than A-Z a-z 0-9 . _ , + = @ - they are\n"
    "replaced and, as for names over 100 characters, a hash of the whole command\n"
    "line ends the name. It holds application.log (the program's output, which\n"
    "also goes to the terminal), execution.log, coordinator.log, config and the\n"
    "checkpoint images. start refuses a run directory that exists already.\n"
    "\n"
    "  --checkpoint-signal SIG this signal to ckpt checkpoints now (default USR1)\n"
    "  --before-limit SEC      in a Slurm job: checkpoint and stop SEC seconds before\n"
    "                          the job's time limit (read with squeue)\n"
    "  --requeue               in a Slurm job: after a checkpoint-and-stop, requeue\n"
    "                          the job (scontrol requeue); see ckpt run --help\n"
    "\n"
    "ckpt exits with the program's exit status (128+N when signal N killed it),\n"
    "0 after --stop-after-checkpoint, 2 for bad input. Signals to ckpt: USR1\n"
    "checkpoints now and goes on; TERM checkpoints and stops the program, exiting\n"
    "with 85 (resume it later), or 86 when that checkpoint failed (the program was\n"
    "sent TERM instead). Ctrl-C reaches the program directly.\n";

static const char restart_help[] =
    "usage: ckpt restart [options] [--] PROGRAM|script.py [ARGS...]\n"
    "\n"
    "Resumes a program from the newest complete checkpoint of its run directory.\n"
    "Give the same program, arguments, --id and --dir as to ckpt start: they name\n"
    "the run directory, and must match the command line saved there. The images\n"
    "are verified as by ckpt verify: all but the page data before anything starts,\n"
    "the page data as they are read, before the program runs. When the newest\n"
    "generation is damaged, restart says so (marking it, when its pages are) and\n"
    "uses the newest intact older one.\n"
    "\n"
    "options:\n"
    "  --id ID, -id ID         as given to ckpt start\n"
    "  --dir DIR               as given to ckpt start\n"
    "  --interval SEC, -i SEC  checkpoint interval from now on (default: the one\n"
    "                          saved by ckpt start)\n"
    "  --stop-after-checkpoint stop again after the next checkpoint\n"
    "  --generation N          restart from generation N and no other (ckpt verify\n"
    "                          RUNDIR lists them), verified in full first\n"
    "  --lazy                  run at once: map the image's uncompressed pages instead\n"
    "                          of reading them first; the images are verified while\n"
    "                          the program runs, and checkpoints wait for that\n"
    "                          (see docs/design.md, lazy restart)\n"
    "  --keep N                checkpoints to keep from now on (default: as start)\n"
    "  --compress auto|none|fast|max  zstd level of the images (default auto: fast,\n"
    "                          and pages stored as they are while the disk waits)\n"
    "  --full-every N          every Nth checkpoint is full, the others store only\n"
    "                          the pages changed since the one before (default 8;\n"
    "                          1: all full)\n"
    "  --no-cow                write images while the program is stopped, instead\n"
    "                          of from a copy-on-write snapshot while it runs on\n"
    "  --exit-with-main        end when the first program ends, ending the rest\n"
    "                          (default: run until every process it started ends)\n"
    "  --python PATH           accepted for symmetry with start (the restored\n"
    "                          program keeps the interpreter it had)\n"
    "\n"
    "Output is appended to application.log. The exit status is the program's.\n";

static const char run_help[] =
    "usage: ckpt run [options] [--] PROGRAM|script.py [ARGS...]\n"
    "\n"
    "Starts the program under checkpointing if its run has no complete checkpoint\n"
    "yet, and resumes it from the latest good one otherwise, so a batch job script\n"
    "can simply run it again after every requeue. A run directory without a\n"
    "checkpoint (the job ended before the first one) is started afresh, keeping\n"
    "its logs. A run whose program exited by itself is not run again: ckpt run\n"
    "exits with the program's status (remove the run directory to run it again).\n"
    "Inside a Slurm job, without --id, the run directory is named after the job\n"
    "(jobJOBID_..., jobARRAYJOB_TASK_... for an array task), which stays the same\n"
    "when the job is requeued; give --id to continue a run in another job.\n"
    "\n"
    "options: those of ckpt start (see ckpt start --help), and\n"
    "  --checkpoint-signal SIG this signal to ckpt checkpoints now (default USR1)\n"
    "  --before-limit SEC      checkpoint and stop SEC seconds before the Slurm job's\n"
    "                          time limit (read once with squeue at start)\n"
    "  --requeue               after a checkpoint-and-stop (SIGTERM, --before-limit),\n"
    "                          requeue the Slurm job with scontrol requeue\n"
    "  --lazy                  when resuming, as ckpt restart --lazy\n"
    "\n"
    "A job script (docs/slurm.md):\n"
    "  #SBATCH --time=60 --requeue --open-mode=append\n"
    "  exec ckpt run --before-limit 120 --requeue -- ./simulation input.dat\n"
    "\n"
    "Exit status: the program's when it ends; 85 when it was checkpointed and\n"
    "stopped (SIGTERM or --before-limit): resume it by running the same ckpt run;\n"
    "86 when a stop was asked for but its checkpoint failed; 2 for bad input.\n";

static const char checkpoint_help[] =
    "usage: ckpt checkpoint RUNDIR\n"
    "\n"
    "Asks the supervisor of RUNDIR for a checkpoint now and waits until it is\n"
    "complete and on disk, then prints its generation number. Exits 1 with the\n"
    "reason when the checkpoint fails (the program keeps running) or no\n"
    "supervisor runs for RUNDIR.\n";

static const char status_help[] =
    "usage: ckpt status [RUNDIR]\n"
    "\n"
    "Shows the state of a run (running, checkpointing, stopped...), the program's\n"
    "pid (in its own pid namespace), the last complete checkpoint (generation,\n"
    "time, size, duration) and when the next one is due. Without RUNDIR, the one\n"
    "run directory in the current directory is used. Never waits on the program:\n"
    "the supervisor answers from its own state, and without a supervisor the\n"
    "files of the run directory are read.\n";

static const char verify_help[] =
    "usage: ckpt verify RUNDIR [--generation N]\n"
    "\n"
    "Checks every complete checkpoint generation of RUNDIR (or only generation N):\n"
    "its manifest, and each image's header, sections and page checksums, its owner\n"
    "(you) and its mode (not writable by others). Prints one line per generation\n"
    "(OK or DAMAGED) and, for a damaged one, what is wrong per image and section.\n"
    "Changes nothing and can run while the program runs. Exits 0 when everything\n"
    "checked is intact, 1 when something is damaged (the one-line error says\n"
    "which generation a restart would use), 2 for bad input.\n";

static const struct {
	const char *name, *text;
} helps[] = {
    {"start", start_help},	     {"restart", restart_help}, {"run", run_help},
    {"checkpoint", checkpoint_help}, {"status", status_help},	{"verify", verify_help},
};

int has_help(const char *command)
{
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		if (strcmp(helps[i].name, command) == 0)
			return 1;
	return 0;
}

void print_help(const char *command)
{
	if (command)
		for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
			if (strcmp(helps[i].name, command) == 0) {
				fputs(helps[i].text, stdout);
				return;
			}
	fputs(overview, stdout);
}
