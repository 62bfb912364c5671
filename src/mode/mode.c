/*
 * mode/mode.c - which mode serves a listener (sd/mode.h): the one place
 * that maps the configuration's `mode` to its engine, so conn.c and the
 * worker never switch on it.
 */
#include "sd/mode.h"

#include "sd/config.h"

const struct sd_mode_ops *sd_mode_for(const struct sd_listener_conf *lc)
{
    /* Anything but an explicit http, connect or admin is L4:
     * sd_config_validate() admits only the four values, and the default
     * is tcp. */
    if (lc->mode == SD_MODE_ADMIN)
        return &sd_mode_admin;
    if (lc->mode == SD_MODE_CONNECT)
        return &sd_mode_connect;
    return lc->mode == SD_MODE_HTTP ? &sd_mode_http : &sd_mode_tcp;
}
