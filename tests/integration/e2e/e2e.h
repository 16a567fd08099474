#ifndef EVBUS_TEST_E2E_H
#define EVBUS_TEST_E2E_H
#endif
