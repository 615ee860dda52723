/* SIGTERM, SIGINT and SIGUSR1 (what SLURM sends before a time limit or preemption) request a clean stop. */
#ifndef ZF_SIGNALS_H
#define ZF_SIGNALS_H

void zf_signals_install(void);
/* The signal number received since install, 0 if none. */
int zf_signals_pending(void);

#endif
