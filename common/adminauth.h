/*
 * Bearer-token check of the admin API (/admin/v1/... on the shard's
 * ADMIN_ADDR and the router's HTTP_ADDR).  Pure: no I/O.
 *
 * ADMIN_TOKEN set: every /admin/v1 request needs "Authorization: Bearer
 * <token>"; a missing or wrong one is 401.  ADMIN_TOKEN unset: read-only
 * endpoints (GET) are served (ADMIN_ALLOW and ADMIN_RATE still apply, as
 * for /health and /metrics), mutating ones (POST) are refused with 403.
 * The comparison is constant-time (SHA-256 of both sides, CRYPTO_memcmp),
 * so neither the token's bytes nor its length leak through timing.
 */
#ifndef ODIN_COMMON_ADMINAUTH_H
#define ODIN_COMMON_ADMINAUTH_H

#define ADMINAUTH_OK            0
#define ADMINAUTH_UNAUTHORIZED  401  /* token set; header missing or wrong */
#define ADMINAUTH_FORBIDDEN     403  /* mutating request, no token configured */

/*
 * Decide one request.  authorization: the Authorization header (NULL when
 * absent); token: the configured ADMIN_TOKEN (NULL or "" when unset);
 * mutating: 1 for POST endpoints.  Returns ADMINAUTH_OK or the HTTP status
 * to answer; *why (static) says which, for the reply and the log.
 */
int adminauth_check(const char *authorization, const char *token, int mutating,
                    const char **why);

#endif
