/* Shared by the library's sources; not installed. */
#ifndef OCR_DEPLOY_INTERNAL_H
#define OCR_DEPLOY_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ocr_deploy.h"

/* Set this thread's last error (printf-style, one line) and return status. */
ocr_status ocr_fail(ocr_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clear this thread's last error and return OCR_OK. */
ocr_status ocr_succeed(void);

/* Start the embedded interpreter (once per process) in the environment named by
 * environment (NULL: OCR_DEPLOY_PYTHON, else the build's) and import the bridge module.
 * Call without the GIL. */
ocr_status host_start(const char *environment);

/* The bridge module ocr_deploy.capi_bridge (borrowed). Only after host_start succeeded,
 * with the GIL held. */
PyObject *host_bridge(void);

/* Turn the pending Python exception into a status and this thread's last error, using the
 * bridge's error_status(exc, during). With the GIL held. */
ocr_status host_failure(const char *during);

#endif
