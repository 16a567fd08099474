/*
 * routes_data — events (metadata, publish) and replays.
 */
#include "admin/admin_internal.h"

const admin_route_t admin_routes_data[] = {
    {0},
};
