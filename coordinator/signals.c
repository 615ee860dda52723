/* Stop requests: the handler only records the signal; the pipeline stops at the next block boundary. */
#include "coordinator/signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t pending = 0;

static void on_signal(int sig) { pending = sig; }

void zf_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int zf_signals_pending(void) { return (int)pending; }
