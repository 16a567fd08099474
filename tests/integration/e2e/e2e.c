/* e2e fixture (in progress). */
#include "e2e.h"
