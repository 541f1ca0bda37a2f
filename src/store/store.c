#include "store/store.h"

const char *store_status_str(int status)
{
    switch (status) {
    case STORE_OK:
        return "ok";
    case STORE_NOT_FOUND:
        return "not found";
    case STORE_UNAVAILABLE:
        return "unavailable";
    case STORE_ERROR:
        return "error";
    case STORE_NOMEM:
        return "out of memory";
    default:
        return "unknown";
    }
}
