/* repl.c - placeholder until the REPL lands. */
#include "sl_runtime.h"
int sl_repl_start(sl_runtime *rt) { (void)rt; return 0; }
