/* Link shims for the controller's unit tests: main.c's pusher/poller wake-ups, which the tested
 * sources call but which the tests never need to run. */
#include "controller.h"

void ctl_trigger_push(ctl_t *c) { (void)c; }
void ctl_trigger_poll(ctl_t *c) { (void)c; }
