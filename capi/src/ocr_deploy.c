/* The C ABI of include/ocr_deploy.h: argument checks in C, then one call into
 * ocr_deploy.capi_bridge (embedded CPython) with the caller's memory as memoryviews. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The smallest struct_size each struct accepts: its size in ABI 1.0. */
#define V1_SIZE(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))
#define OPTIONS_V1 V1_SIZE(ocr_options, environment)
#define INFO_V1 V1_SIZE(ocr_model_info, device)
#define IMAGE_V1 V1_SIZE(ocr_image, pixel_format)
#define LABELS_V1 V1_SIZE(ocr_label_map, label_type)
#define SCORES_V1 V1_SIZE(ocr_score_map, layout)

struct ocr_segmenter {
    PyObject *runtime;    /* the ocr_deploy.runtime.Segmenter */
    ocr_model_info info;  /* complete; its pointers point into the fields below */
    char **class_names;
    uint8_t *palette;
    char *precision, *backend, *device;
};

/* ---- errors -------------------------------------------------------------------------- */

static _Thread_local char last_error[2048];

ocr_status ocr_fail(ocr_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int length = vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    if (length >= (int)sizeof last_error)
        memcpy(last_error + sizeof last_error - 4, "...", 4);
    for (char *c = last_error; *c; c++) /* one line, whatever the text held */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return status;
}

ocr_status ocr_succeed(void)
{
    last_error[0] = '\0';
    return OCR_OK;
}

const char *ocr_last_error(void)
{
    return last_error;
}

const char *ocr_status_name(ocr_status status)
{
    static const char *const names[] = {
        "OCR_OK", "OCR_E_INVALID_ARGUMENT", "OCR_E_BAD_ARTIFACT", "OCR_E_BUFFER_TOO_SMALL",
        "OCR_E_UNSUPPORTED", "OCR_E_ENVIRONMENT", "OCR_E_OUT_OF_MEMORY", "OCR_E_INTERNAL"};
    if (status < 0 || (size_t)status >= sizeof names / sizeof names[0])
        return "unknown status";
    return names[status];
}

uint32_t ocr_abi_version(void)
{
    return OCR_ABI_VERSION;
}

/* ---- argument checks ----------------------------------------------------------------- */

static size_t pixel_bytes(ocr_pixel_format format)
{
    switch (format) {
    case OCR_PIXEL_RGB8: case OCR_PIXEL_BGR8: return 3;
    case OCR_PIXEL_RGBA8: case OCR_PIXEL_BGRA8: return 4;
    case OCR_PIXEL_GRAY8: return 1;
    default: return 0;
    }
}

static const char *pixel_name(ocr_pixel_format format)
{
    static const char *const names[] = {"RGB8", "BGR8", "RGBA8", "BGRA8", "GRAY8"};
    return format >= 1 && format <= 5 ? names[format - 1] : "?";
}

/* Element i of an array whose elements are struct_size bytes apart. */
static const void *element(const void *array, size_t struct_size, size_t i)
{
    return (const char *)array + i * struct_size;
}

/* The array itself and a struct_size that every element shares and that covers ABI 1.0. */
static ocr_status check_array(const void *array, const char *name, size_t count,
                              size_t minimum, const char *type)
{
    if (array == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "%s: expected an array of %zu %s, found NULL; "
                        "pass one element per image", name, count, type);
    size_t size = *(const size_t *)array;
    for (size_t i = 0; i < count; i++) {
        size_t found = *(const size_t *)element(array, size >= minimum ? size : minimum, i);
        if (found < minimum || found != size)
            return ocr_fail(OCR_E_INVALID_ARGUMENT, "%s[%zu].struct_size: expected "
                            "sizeof(%s) (at least %zu, the same in every element), found %zu; "
                            "set it to sizeof(%s)", name, i, type, minimum, found, type);
    }
    return OCR_OK;
}

/* The bytes one image or result spans: (height - 1) * stride + row, with overflow checks. */
static int span(size_t row, size_t stride, uint32_t height, size_t *bytes)
{
    if (height > 1 && stride > (PY_SSIZE_T_MAX - row) / (height - 1))
        return 0;
    *bytes = (height - 1) * stride + row;
    return 1;
}

static ocr_status check_image(const ocr_image *image, size_t i, uint32_t channels,
                              size_t *stride, size_t *bytes)
{
    size_t size = pixel_bytes(image->pixel_format);
    if (size == 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu].pixel_format: expected one of "
                        "OCR_PIXEL_RGB8, _BGR8, _RGBA8, _BGRA8, _GRAY8, found %d; set the "
                        "format of the pixels", i, (int)image->pixel_format);
    if (image->data == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu].data: expected pixels, found "
                        "NULL; point it at the top row", i);
    if (image->width == 0 || image->height == 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu]: expected an image with pixels, "
                        "found %ux%u; skip empty images", i, image->width, image->height);
    if (channels == 1 && image->pixel_format != OCR_PIXEL_GRAY8)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu].pixel_format: expected "
                        "OCR_PIXEL_GRAY8 (the model is greyscale), found %s; convert the "
                        "image to grey", i, pixel_name(image->pixel_format));
    size_t row = (size_t)image->width * size;
    *stride = image->stride_bytes ? image->stride_bytes : row;
    if (*stride < row)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu].stride_bytes: expected at least "
                        "%zu (width %u x %zu bytes per %s pixel), found %zu; pass the distance "
                        "between rows in bytes, or 0 for packed rows", i, row, image->width,
                        size, pixel_name(image->pixel_format), *stride);
    if (!span(row, *stride, image->height, bytes))
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu]: expected an image that fits in "
                        "memory, found %u rows %zu bytes apart; check height and stride_bytes",
                        i, image->height, *stride);
    return OCR_OK;
}

/* A label map's type: its label_type, or the model's when 0. */
static ocr_label_type label_type_of(const ocr_segmenter *s, const ocr_label_map *map)
{
    return map->label_type ? map->label_type : s->info.label_type;
}

static ocr_status check_labels(const ocr_segmenter *s, const ocr_label_map *map,
                               const ocr_image *image, size_t i, size_t *stride, size_t *bytes)
{
    ocr_label_type type = label_type_of(s, map);
    size_t size = type == OCR_LABEL_U8 ? 1 : type == OCR_LABEL_U16 ? 2 : 0;
    if (size == 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].label_type: expected "
                        "OCR_LABEL_U8, OCR_LABEL_U16 or 0, found %d; use "
                        "ocr_model_info.label_type", i, (int)map->label_type);
    if (size == 1 && (s->info.num_classes == 0 || s->info.num_classes > 256))
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].label_type: expected "
                        "OCR_LABEL_U16 (the model has %u classes), found OCR_LABEL_U8; use "
                        "ocr_model_info.label_type", i, s->info.num_classes);
    if (map->data == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].data: expected a buffer for the "
                        "labels, found NULL; allocate one", i);
    if ((uintptr_t)map->data % size != 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].data: expected an address "
                        "aligned to %zu bytes, found %p; allocate it with malloc", i, size,
                        map->data);
    size_t row = (size_t)image->width * size;
    *stride = map->stride_bytes ? map->stride_bytes : row;
    if (*stride < row || *stride % size != 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].stride_bytes: expected a "
                        "multiple of %zu of at least %zu (width %u of images[%zu]), found %zu; "
                        "pass 0 for packed rows", i, size, row, image->width, i, *stride);
    if (!span(row, *stride, image->height, bytes))
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu]: expected a label map that fits "
                        "in memory, found %u rows %zu bytes apart", i, image->height, *stride);
    if (map->capacity_bytes < *bytes)
        return ocr_fail(OCR_E_BUFFER_TOO_SMALL, "results[%zu].capacity_bytes: expected at "
                        "least %zu (%ux%u labels of %zu byte%s, rows %zu bytes apart), found "
                        "%zu; allocate a larger buffer", i, *bytes, image->width, image->height,
                        size, size == 1 ? "" : "s", *stride, map->capacity_bytes);
    return OCR_OK;
}

static ocr_status check_scores(const ocr_segmenter *s, const ocr_score_map *map,
                               const ocr_image *image, size_t i, size_t *bytes)
{
    if (map->layout != 0 && map->layout != OCR_SCORES_HWC && map->layout != OCR_SCORES_CHW)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].layout: expected "
                        "OCR_SCORES_HWC, OCR_SCORES_CHW or 0, found %d; choose one", i,
                        (int)map->layout);
    if (map->data == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].data: expected a buffer for the "
                        "scores, found NULL; allocate one", i);
    if ((uintptr_t)map->data % sizeof(float) != 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "results[%zu].data: expected an address "
                        "aligned to %zu bytes, found %p; allocate it with malloc", i,
                        sizeof(float), (void *)map->data);
    size_t pixels = (size_t)image->width * image->height, per_pixel = s->info.num_classes *
        sizeof(float);
    if (pixels > PY_SSIZE_T_MAX / per_pixel)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "images[%zu]: expected scores that fit in "
                        "memory, found %ux%u pixels x %u classes", i, image->width,
                        image->height, s->info.num_classes);
    *bytes = pixels * per_pixel;
    if (map->capacity_bytes < *bytes)
        return ocr_fail(OCR_E_BUFFER_TOO_SMALL, "results[%zu].capacity_bytes: expected at "
                        "least %zu (%ux%u pixels x %u classes x 4 bytes), found %zu; allocate a "
                        "larger buffer", i, *bytes, image->width, image->height,
                        s->info.num_classes, map->capacity_bytes);
    return OCR_OK;
}

/* ---- create / info / destroy --------------------------------------------------------- */

static char *copy_string(const char *text)
{
    char *copy = malloc(strlen(text) + 1);
    return copy ? strcpy(copy, text) : NULL;
}

static void free_segmenter(ocr_segmenter *s)
{
    if (s->class_names)
        for (uint32_t k = 0; k < s->info.num_classes; k++)
            free(s->class_names[k]);
    free(s->class_names);
    free(s->palette);
    free(s->precision);
    free(s->backend);
    free(s->device);
    free(s);
}

/* Fill s->info from the bridge's describe(); with the GIL. */
static ocr_status read_info(ocr_segmenter *s)
{
    PyObject *answer = PyObject_CallMethod(host_bridge(), "describe", "O", s->runtime);
    if (answer == NULL)
        return host_failure("create");
    unsigned int classes, height, width, channels, max_batch, min_h, min_w, max_h, max_w;
    int has_scores;
    PyObject *names;
    const char *palette, *precision, *backend, *device;
    Py_ssize_t palette_size;
    ocr_status status = OCR_OK;
    if (!PyArg_ParseTuple(answer, "IO!y#IIIpIsss(IIII)", &classes, &PyList_Type, &names,
                          &palette, &palette_size, &height, &width, &channels, &has_scores,
                          &max_batch, &precision, &backend, &device, &min_h, &min_w, &max_h,
                          &max_w)) {
        status = host_failure("create");
        goto done;
    }
    ocr_model_info *info = &s->info;
    info->struct_size = sizeof *info;
    info->num_classes = classes;
    info->input_width = width;
    info->input_height = height;
    info->input_channels = channels;
    info->label_type = classes >= 1 && classes <= 256 ? OCR_LABEL_U8 : OCR_LABEL_U16;
    info->has_scores = has_scores;
    info->max_batch = max_batch;
    info->image_min_width = min_w;
    info->image_min_height = min_h;
    info->image_max_width = max_w;
    info->image_max_height = max_h;
    s->class_names = calloc(classes ? classes : 1, sizeof(char *));
    s->palette = malloc(palette_size ? (size_t)palette_size : 1);
    s->precision = copy_string(precision);
    s->backend = copy_string(backend);
    s->device = copy_string(device);
    if (!s->class_names || !s->palette || !s->precision || !s->backend || !s->device) {
        status = ocr_fail(OCR_E_OUT_OF_MEMORY, "out of memory while opening the model");
        goto done;
    }
    memcpy(s->palette, palette, (size_t)palette_size);
    for (uint32_t k = 0; k < classes && k < (uint32_t)PyList_GET_SIZE(names); k++) {
        const char *name = PyUnicode_AsUTF8(PyList_GET_ITEM(names, k));
        if (name == NULL) {
            status = host_failure("create");
            goto done;
        }
        if ((s->class_names[k] = copy_string(name)) == NULL) {
            status = ocr_fail(OCR_E_OUT_OF_MEMORY, "out of memory while opening the model");
            goto done;
        }
    }
    info->class_names = (const char *const *)s->class_names;
    info->palette = s->palette;
    info->precision = s->precision;
    info->backend = s->backend;
    info->device = s->device;
done:
    Py_DECREF(answer);
    return status;
}

ocr_status ocr_segmenter_create(const char *artifact_path, const ocr_options *options,
                                ocr_segmenter **out)
{
    if (out == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "out: expected where to store the segmenter, "
                        "found NULL; pass &segmenter");
    *out = NULL;
    if (artifact_path == NULL || artifact_path[0] == '\0')
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "artifact_path: expected the path of an .onnx "
                        "or .engine artifact, found %s; pass the model file",
                        artifact_path ? "an empty string" : "NULL");
    ocr_options chosen = {sizeof chosen, NULL, NULL, 0, 0, 0, NULL};
    if (options != NULL) {
        if (options->struct_size < OPTIONS_V1)
            return ocr_fail(OCR_E_INVALID_ARGUMENT, "options->struct_size: expected "
                            "sizeof(ocr_options) (at least %zu), found %zu; set it to "
                            "sizeof(ocr_options)", (size_t)OPTIONS_V1, options->struct_size);
        memcpy(&chosen, options, OPTIONS_V1);
    }
    ocr_status status = host_start(chosen.environment);
    if (status != OCR_OK)
        return status;
    ocr_segmenter *s = calloc(1, sizeof *s);
    if (s == NULL)
        return ocr_fail(OCR_E_OUT_OF_MEMORY, "out of memory while opening %s", artifact_path);
    PyGILState_STATE gil = PyGILState_Ensure();
    s->runtime = PyObject_CallMethod(host_bridge(), "open_segmenter", "szziII", artifact_path,
                                     chosen.backend, chosen.providers, (int)chosen.device_id,
                                     (unsigned int)chosen.threads,
                                     (unsigned int)chosen.max_batch);
    if (s->runtime == NULL) {
        status = host_failure("create");
    } else {
        status = read_info(s);
        if (status != OCR_OK) {
            PyObject *closed = PyObject_CallMethod(host_bridge(), "close", "O", s->runtime);
            Py_XDECREF(closed);
            PyErr_Clear();
            Py_CLEAR(s->runtime);
        }
    }
    PyGILState_Release(gil);
    if (status != OCR_OK) {
        free_segmenter(s);
        return status;
    }
    *out = s;
    return ocr_succeed();
}

ocr_status ocr_segmenter_info(const ocr_segmenter *segmenter, ocr_model_info *info)
{
    if (segmenter == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "segmenter: expected a segmenter from "
                        "ocr_segmenter_create, found NULL; create one first");
    if (info == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "info: expected an ocr_model_info to fill, "
                        "found NULL; pass &info");
    if (info->struct_size < INFO_V1)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "info->struct_size: expected "
                        "sizeof(ocr_model_info) (at least %zu), found %zu; set it to "
                        "sizeof(ocr_model_info)", (size_t)INFO_V1, info->struct_size);
    size_t size = info->struct_size < sizeof *info ? info->struct_size : sizeof *info;
    memcpy((char *)info + sizeof(size_t), (const char *)&segmenter->info + sizeof(size_t),
           size - sizeof(size_t));
    return ocr_succeed();
}

void ocr_segmenter_destroy(ocr_segmenter *segmenter)
{
    if (segmenter == NULL)
        return;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *closed = PyObject_CallMethod(host_bridge(), "close", "O", segmenter->runtime);
    Py_XDECREF(closed);
    PyErr_Clear(); /* closing cannot usefully fail: the memory is released either way */
    Py_CLEAR(segmenter->runtime);
    PyGILState_Release(gil);
    free_segmenter(segmenter);
}

/* ---- predict ------------------------------------------------------------------------- */

/* What differs between label maps and score maps. */
typedef struct {
    const char *function;   /* bridge function */
    size_t result_minimum;  /* V1 size of the result struct */
    const char *result_type;
} request_kind;

static const request_kind LABELS = {"predict", LABELS_V1, "ocr_label_map"};
static const request_kind SCORES = {"predict_scores", SCORES_V1, "ocr_score_map"};

/* Check every argument, then call the bridge with lists of memoryviews. */
static ocr_status predict(ocr_segmenter *s, const ocr_image *images, size_t count,
                          void *results, const request_kind *kind)
{
    if (s == NULL)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "segmenter: expected a segmenter from "
                        "ocr_segmenter_create, found NULL; create one first");
    if (count == 0)
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "count: expected at least one image, found 0; "
                        "pass the number of images");
    if (count > (size_t)PY_SSIZE_T_MAX / (4 * sizeof(size_t)))
        return ocr_fail(OCR_E_INVALID_ARGUMENT, "count: expected a number of images that fits "
                        "in memory, found %zu; split the batch", count);
    if (kind == &SCORES && !s->info.has_scores)
        return ocr_fail(OCR_E_UNSUPPORTED, "segmenter: expected a model with a logits output "
                        "for scores, found a labels-only model; re-export without "
                        "--labels-only, or use ocr_segmenter_predict");
    ocr_status status = check_array(images, "images", count, IMAGE_V1, "ocr_image");
    if (status == OCR_OK)
        status = check_array(results, "results", count, kind->result_minimum,
                             kind->result_type);
    if (status != OCR_OK)
        return status;
    size_t image_size = images->struct_size, result_size = *(const size_t *)results;
    /* per image: its stride and span in bytes, then its result's */
    size_t *spans = malloc(count * 4 * sizeof(size_t));
    if (spans == NULL)
        return ocr_fail(OCR_E_OUT_OF_MEMORY, "out of memory for %zu images", count);
    for (size_t i = 0; i < count && status == OCR_OK; i++) {
        const ocr_image *image = element(images, image_size, i);
        void *result = (char *)results + i * result_size;
        size_t *at = spans + 4 * i;
        status = check_image(image, i, s->info.input_channels, &at[0], &at[1]);
        if (status == OCR_OK && kind == &LABELS)
            status = check_labels(s, result, image, i, &at[2], &at[3]);
        else if (status == OCR_OK)
            status = check_scores(s, result, image, i, &at[3]);
    }
    if (status != OCR_OK) {
        free(spans);
        return status;
    }

    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *inputs = PyList_New((Py_ssize_t)count), *outputs = PyList_New((Py_ssize_t)count);
    PyObject *done = NULL;
    for (size_t i = 0; inputs && outputs && i < count; i++) {
        const ocr_image *image = element(images, image_size, i);
        const size_t *at = spans + 4 * i;
        PyObject *in = Py_BuildValue(
            "(NIIni)", PyMemoryView_FromMemory((char *)image->data, (Py_ssize_t)at[1], PyBUF_READ),
            image->width, image->height, (Py_ssize_t)at[0], (int)image->pixel_format);
        PyObject *out;
        if (kind == &LABELS) {
            ocr_label_map *map = (ocr_label_map *)((char *)results + i * result_size);
            out = Py_BuildValue("(Nni)", PyMemoryView_FromMemory(map->data, (Py_ssize_t)at[3],
                                                                 PyBUF_WRITE),
                                (Py_ssize_t)at[2], (int)label_type_of(s, map));
        } else {
            ocr_score_map *map = (ocr_score_map *)((char *)results + i * result_size);
            out = Py_BuildValue("(Ni)", PyMemoryView_FromMemory((char *)map->data,
                                                                (Py_ssize_t)at[3], PyBUF_WRITE),
                                (int)(map->layout ? map->layout : OCR_SCORES_HWC));
        }
        if (in == NULL || out == NULL) {
            Py_XDECREF(in);
            Py_XDECREF(out);
            Py_CLEAR(inputs);
            break;
        }
        PyList_SET_ITEM(inputs, (Py_ssize_t)i, in);
        PyList_SET_ITEM(outputs, (Py_ssize_t)i, out);
    }
    if (inputs && outputs)
        done = PyObject_CallMethod(host_bridge(), kind->function, "OOO", s->runtime, inputs,
                                   outputs);
    status = done ? ocr_succeed() : host_failure("predict");
    Py_XDECREF(done);
    Py_XDECREF(inputs);
    Py_XDECREF(outputs);
    PyGILState_Release(gil);
    free(spans);
    return status;
}

ocr_status ocr_segmenter_predict(ocr_segmenter *segmenter, const ocr_image *images,
                                 size_t count, ocr_label_map *results)
{
    return predict(segmenter, images, count, results, &LABELS);
}

ocr_status ocr_segmenter_predict_scores(ocr_segmenter *segmenter, const ocr_image *images,
                                        size_t count, ocr_score_map *results)
{
    return predict(segmenter, images, count, results, &SCORES);
}
