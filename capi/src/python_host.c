/* The embedded CPython interpreter: started once per process, in the Python environment the
 * caller names, then left running with its global interpreter lock released. */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OCR_DEPLOY_DEFAULT_PYTHON
#define OCR_DEPLOY_DEFAULT_PYTHON ""
#endif

static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
static int host_ready;                 /* the bridge is imported */
static int host_adopted;               /* the process ran Python before us: we use it */
static char host_program[PATH_MAX];    /* the interpreter whose environment we started */
static ocr_status host_broken;         /* a start failed after Python began: final */
static char host_broken_message[1024];
static PyObject *host_bridge_module;   /* ocr_deploy.capi_bridge, owned forever */

PyObject *host_bridge(void)
{
    return host_bridge_module;
}

/* The interpreter to start: environment if given, else $OCR_DEPLOY_PYTHON, else the build's
 * default. A folder means its bin/python3 (or bin/python). */
static ocr_status resolve_program(const char *environment, char program[PATH_MAX])
{
    const char *source = "ocr_options.environment";
    if (environment == NULL || environment[0] == '\0') {
        environment = getenv("OCR_DEPLOY_PYTHON");
        source = "OCR_DEPLOY_PYTHON";
    }
    if (environment == NULL || environment[0] == '\0') {
        environment = OCR_DEPLOY_DEFAULT_PYTHON;
        source = "the build's default environment";
    }
    if (environment[0] == '\0')
        return ocr_fail(OCR_E_ENVIRONMENT, "%s: expected a Python environment with ocr-deploy "
                        "installed, found none configured; pass ocr_options.environment or set "
                        "OCR_DEPLOY_PYTHON to its folder or its bin/python", source);
    struct stat info;
    if (stat(environment, &info) == 0 && S_ISDIR(info.st_mode)) {
        static const char *const names[] = {"bin/python3", "bin/python"};
        for (size_t i = 0; i < 2; i++) {
            int length = snprintf(program, PATH_MAX, "%s/%s", environment, names[i]);
            if (length > 0 && length < PATH_MAX && access(program, X_OK) == 0)
                return ocr_succeed();
        }
    } else if (strlen(environment) < PATH_MAX && access(environment, X_OK) == 0) {
        strcpy(program, environment);
        return ocr_succeed();
    }
    return ocr_fail(OCR_E_ENVIRONMENT, "%s %s: expected a Python environment (its folder or "
                    "its bin/python), found no Python interpreter there; pass "
                    "ocr_options.environment or set OCR_DEPLOY_PYTHON to the environment where "
                    "ocr-deploy is installed", source, environment);
}

/* Whether two interpreters belong to one environment: they lie in the same folder
 * (bin/python and bin/python3 of one virtual environment do). */
static int same_environment(const char *a, const char *b)
{
    char folder_a[PATH_MAX], folder_b[PATH_MAX], real_a[PATH_MAX], real_b[PATH_MAX];
    snprintf(folder_a, sizeof folder_a, "%s", a);
    snprintf(folder_b, sizeof folder_b, "%s", b);
    char *slash_a = strrchr(folder_a, '/'), *slash_b = strrchr(folder_b, '/');
    if (slash_a)
        *slash_a = '\0';
    if (slash_b)
        *slash_b = '\0';
    return realpath(slash_a ? folder_a : ".", real_a) != NULL &&
           realpath(slash_b ? folder_b : ".", real_b) != NULL && strcmp(real_a, real_b) == 0;
}

/* Import the bridge with the GIL held; a failure is final (the interpreter stays). */
static ocr_status import_bridge(const char *where)
{
    host_bridge_module = PyImport_ImportModule("ocr_deploy.capi_bridge");
    if (host_bridge_module != NULL)
        return ocr_succeed();
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *found = text ? PyUnicode_AsUTF8(text) : NULL;
    if (found == NULL) {
        PyErr_Clear();
        found = "an import error";
    }
    host_broken = ocr_fail(OCR_E_ENVIRONMENT, "%s: expected a Python environment with "
                           "ocr-deploy installed, found that importing ocr_deploy.capi_bridge "
                           "fails (%s: %s); install ocr-deploy there, or name another "
                           "environment (ocr_options.environment, OCR_DEPLOY_PYTHON)", where,
                           type ? ((PyTypeObject *)type)->tp_name : "error", found);
    snprintf(host_broken_message, sizeof host_broken_message, "%s", ocr_last_error());
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return host_broken;
}

static ocr_status start_interpreter(const char *program)
{
    PyConfig config;
    /* Isolated: the host's PYTHONPATH / PYTHONHOME / user site cannot break us; no signal
     * handlers; the locale is left alone. The prefix (and so the environment's
     * site-packages) follows from program_name, as for the interpreter itself. */
    PyConfig_InitIsolatedConfig(&config);
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, program);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        host_broken = ocr_fail(OCR_E_ENVIRONMENT, "%s: expected a Python interpreter that "
                               "starts, found that it fails (%s); name another environment",
                               program, status.err_msg ? status.err_msg : "no reason given");
        snprintf(host_broken_message, sizeof host_broken_message, "%s", ocr_last_error());
        return host_broken;
    }
    ocr_status result = import_bridge(program);
    PyEval_SaveThread(); /* from now on, threads take the GIL when they need it */
    return result;
}

static ocr_status start_locked(const char *environment)
{
    if (host_broken)
        return ocr_fail(host_broken, "%s", host_broken_message);
    if (host_ready && host_adopted)
        return ocr_succeed();
    if (!host_ready && Py_IsInitialized()) { /* loaded into a Python process */
        PyGILState_STATE gil = PyGILState_Ensure();
        ocr_status status = import_bridge("the host process's Python");
        PyGILState_Release(gil);
        host_adopted = host_ready = status == OCR_OK;
        return status;
    }
    char program[PATH_MAX];
    ocr_status status = resolve_program(environment, program);
    if (status != OCR_OK)
        return status;
    if (host_ready) {
        if (same_environment(program, host_program))
            return ocr_succeed();
        return ocr_fail(OCR_E_ENVIRONMENT, "%s: expected the Python environment this process "
                        "already runs (%s), found another; one process runs one environment: "
                        "name the same one, or none", program, host_program);
    }
    status = start_interpreter(program);
    if (status == OCR_OK) {
        strcpy(host_program, program);
        host_ready = 1;
    }
    return status;
}

ocr_status host_start(const char *environment)
{
    pthread_mutex_lock(&host_lock);
    ocr_status status = start_locked(environment);
    pthread_mutex_unlock(&host_lock);
    return status;
}

ocr_status host_failure(const char *during)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    PyObject *answer = value ? PyObject_CallMethod(host_bridge_module, "error_status", "Os",
                                                   value, during)
                             : NULL;
    int code = 0;
    const char *text = NULL;
    ocr_status status;
    if (answer != NULL && PyArg_ParseTuple(answer, "is", &code, &text) && code != OCR_OK) {
        status = ocr_fail(code, "%s", text);
    } else {
        PyErr_Clear();
        status = ocr_fail(OCR_E_INTERNAL, "internal error in libocr_deploy: a Python error "
                          "that cannot be described; please report it");
    }
    Py_XDECREF(answer);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return status;
}
