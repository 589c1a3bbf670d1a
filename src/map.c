/* A string-keyed open-addressing hash table of indexes. */
#include "agora.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

static size_t
hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

int
ag_map_init(struct ag_map *m, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2 + 1)
		cap *= 2;
	m->cap = cap;
	m->len = 0;
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		ag_map_release(m);
		return ag_error_set(AG_ERROR, "out of memory");
	}
	return 0;
}

void
ag_map_release(struct ag_map *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->len = 0;
}

static int
grow(struct ag_map *m)
{
	struct ag_map n;
	size_t i;

	if (ag_map_init(&n, m->cap) < 0)
		return AG_ERROR;
	for (i = 0; i < m->cap; i++)
		if (m->keys[i])
			ag_map_put(&n, m->keys[i], m->vals[i]);
	ag_map_release(m);
	*m = n;
	return 0;
}

/* Returns AG_EEXISTS, leaving the old value, when the key is present. */
int
ag_map_put(struct ag_map *m, const char *key, size_t val)
{
	size_t i;

	if ((m->len + 1) * 2 > m->cap && grow(m) < 0)
		return AG_ERROR;
	for (i = hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0)
			return AG_EEXISTS;
	m->keys[i] = key;
	m->vals[i] = val;
	m->len++;
	return 0;
}

int
ag_map_get(const struct ag_map *m, const char *key, size_t *out)
{
	size_t i;

	if (!m->cap)
		return AG_ENOTFOUND;
	for (i = hash(key) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (strcmp(m->keys[i], key) == 0) {
			*out = m->vals[i];
			return 0;
		}
	return AG_ENOTFOUND;
}
