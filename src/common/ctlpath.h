/* Connecting to a run directory's control socket by its full path, from
 * inside the program (agent) and the restorer. Socket addresses hold at
 * most 108 bytes, so the connection goes through the short alias
 * /proc/self/fd/<O_PATH descriptor of the directory>/<name>. */
#ifndef CKPT_CTLPATH_H
#define CKPT_CTLPATH_H

/* Returns a connected, close-on-exec stream socket, or -1 with errno. */
int ctl_connect_path(const char *sock_path);

#endif
