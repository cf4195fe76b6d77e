/*
** strmap.h — a thread-safe map from strings to strings (env.storage.memory's values).
** Thread ownership: none — any thread may call any function at any time; one mutex guards
** the map, held only while it is read or changed (values are copied out, never lent).
*/
#ifndef TASKHOST_STRMAP_H
#define TASKHOST_STRMAP_H

struct strmap;

struct strmap *strmap_new(void);
void strmap_free(struct strmap *m);
/* A malloc'd copy of key's value (the caller frees it), or NULL when key is absent. */
char *strmap_get(struct strmap *m, const char *key);
/* Sets key to a copy of value (replacing any). */
void strmap_set(struct strmap *m, const char *key, const char *value);

#endif
