/*
 * routes_dlq — dead letters: list, get, retry, delete, bulk re-drive.
 */
#include "admin/admin_internal.h"

const admin_route_t admin_routes_dlq[] = {
    {0},
};

int admin__jobs_start(admin_t *a, const evbus_config_t *cfg, char *err, size_t errlen)
{
    (void)a;
    (void)cfg;
    (void)err;
    (void)errlen;
    return 0;
}

void admin__jobs_stop(admin_t *a) { (void)a; }
