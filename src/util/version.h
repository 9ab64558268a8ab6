#ifndef PMS_VERSION_H
#define PMS_VERSION_H
#define PMS_VERSION "0.1.0"
#endif
