/*
 * routes_ops — stats, handlers (pause/resume), the audit log.
 */
#include "admin/admin_internal.h"

const admin_route_t admin_routes_ops[] = {
    {0},
};
