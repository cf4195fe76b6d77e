/*
** envfile.h — a pure parser of `.env` text (env.storage.file): `KEY=value` lines, `#`
** comment lines, blank lines, an optional `export ` prefix, spaces around `=`. A value is
** bare (trimmed; ` #...` after it is a comment), 'single quoted' (literal) or "double
** quoted" (escapes \n \t \r \\ \" \$; anything else after a backslash is kept as is). A
** quoted value ends on its line; after the closing quote only spaces and a comment may
** follow. A key is [A-Za-z_][A-Za-z0-9_.]*. No ${} expansion.
** Stateless and reentrant: any thread (the registry loader's, the unit test).
*/
#ifndef TASKHOST_ENVFILE_H
#define TASKHOST_ENVFILE_H

#include <stddef.h>

/* Called once per assignment in file order; key and value are NUL-terminated and live only
** for the call. Return 0 to go on, non-zero to stop (envfile_parse then returns -1 with
** err "stopped"). */
typedef int (*envfile_fn)(void *ud, const char *key, const char *value, int line);

/* 0, or -1 with the 1-based line of the first malformed line in *line and a message in err. */
int envfile_parse(const char *text, size_t len, envfile_fn fn, void *ud, int *line, char *err,
                  size_t errlen);

#endif
