/*  act_heartbeat.h — the heartbeat actor: a kernel actor docked over
    inproc://aaax like any system, publishing the kernel's status (contract
    section 7) on `heartbeat` every heartbeat_ms. On "SHUTDOWN" from its pipe
    it publishes one last heartbeat (state "shutdown") and answers "DONE". */

#ifndef ACT_HEARTBEAT_H_INCLUDED
#define ACT_HEARTBEAT_H_INCLUDED

#include <stdint.h>
#include <czmq.h>

typedef struct {
    const char *kernel_token; /* copied by the actor before it signals */
    uint32_t heartbeat_ms;
} act_heartbeat_args_t;

/*  The actor body, for zactor_new (act_heartbeat, &args). */
void act_heartbeat (zsock_t *pipe, void *args);

#endif
