#include "core/core.h"

CFNET_API unsigned cfnet_version_number(void) { return CFNET_VERSION_NUMBER; }

CFNET_API const char *cfnet_version_string(void) { return CFNET_VERSION_STRING; }
