/*  hal_kv.h — per-app key-value namespaces in an LMDB environment of their
    own (aaax.kv.get/put/del of Lua apps). Every namespace is isolated
    exactly, carries a usage record (bytes, count) kept in the same
    transaction as its changes, and may be held to a quota.

    Thread safety: one hal_kv_t may be used from any number of threads at
    once (the environment is opened with MDB_NOTLS; every call runs its own
    transaction; LMDB serialises writers and never blocks readers). Do not
    open the same directory twice in one process. */

#ifndef HAL_KV_H_INCLUDED
#define HAL_KV_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define HAL_KV_NS_MAX 128              /* namespace (app name) bytes */
#define HAL_KV_KEY_MAX 512             /* key bytes */
#define HAL_KV_VALUE_MAX (1024 * 1024) /* value bytes */

typedef struct _hal_kv_t hal_kv_t;

/*  Opens (creating if needed, with missing parents, mode 0700) the
    environment in dir with a map of map_size bytes (0: LMDB's default).
    Returns NULL and a message in err on failure. The caller owns it. */
hal_kv_t *hal_kv_open (const char *dir, size_t map_size, char *err,
                       size_t errlen);

/*  Closes the environment; no call may be running. Accepts NULL. */
void hal_kv_destroy (hal_kv_t **self_p);

/*  ns is an app name (1..128 bytes, a C string); keys are 1..512 bytes of
    anything (NUL included); values are 0..HAL_KV_VALUE_MAX bytes. Every
    call refuses a bad ns or an empty key with AAAX_EINVAL and a key longer
    than HAL_KV_KEY_MAX with AAAX_ETOOBIG. */

/*  Copies the value of key into a malloc'd buffer (*val_p, *vlen_p; the
    caller frees). Returns 0, AAAX_ENOENT, AAAX_ENOMEM or AAAX_EIO. */
int hal_kv_get (hal_kv_t *self, const char *ns, const void *key, size_t klen,
                void **val_p, size_t *vlen_p);

/*  Sets key to val in one synced commit: durable when it returns 0.
    AAAX_ELIMIT when the namespace's total (sum of klen + vlen of its
    entries, the replaced entry not counted) would exceed quota_bytes (0: no
    quota); AAAX_ETOOBIG for a value over HAL_KV_VALUE_MAX; AAAX_EIO when
    the map is full or on an I/O failure (nothing changed then). */
int hal_kv_put (hal_kv_t *self, const char *ns, const void *key, size_t klen,
                const void *val, size_t vlen, uint64_t quota_bytes);

/*  Deletes key in one synced commit. Returns 0, AAAX_ENOENT or AAAX_EIO. */
int hal_kv_del (hal_kv_t *self, const char *ns, const void *key, size_t klen);

/*  The namespace's total bytes (klen + vlen of its entries) and number of
    entries; 0 and 0 for a namespace never written. Returns 0, AAAX_EINVAL
    or AAAX_EIO. */
int hal_kv_usage (hal_kv_t *self, const char *ns, uint64_t *bytes,
                  uint64_t *count);

/*  Calls fn for every entry of ns within one read transaction (a snapshot;
    key and value are borrowed for the call), in byte order of the keys,
    except that keys longer than 475 bytes sharing their first 475 bytes
    come in an unspecified order among themselves. fn returning non-zero
    stops the walk and that value is returned; otherwise 0, AAAX_EINVAL or
    AAAX_EIO. */
typedef int (hal_kv_each_fn) (void *arg, const void *key, size_t klen,
                              const void *val, size_t vlen);
int hal_kv_each (hal_kv_t *self, const char *ns, hal_kv_each_fn *fn, void *arg);

#endif
