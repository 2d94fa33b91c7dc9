/*
 * capi_test: exercises libocr_deploy through ocr_deploy.h only; run by tests/test_capi.py,
 * which checks the outputs against the Python runtime.
 *
 *   capi_test info MODEL
 *   capi_test predict MODEL OUT.raw u8|u16 WxH:FORMAT...   one batch; labels to OUT.raw
 *   capi_test scores MODEL OUT.raw hwc|chw WxH:FORMAT...   one batch; float32 to OUT.raw
 *   capi_test errors MODEL NOT_A_MODEL LABELS_ONLY_MODEL    every bad input, one line each
 *   capi_test threads MODEL THREADS PREDICTIONS             threaded == serial
 *   capi_test lifecycle MODEL TIMES                         create/destroy, RSS in KiB
 *   capi_test repeat MODEL IMAGES WxH:FORMAT BATCH          segment IMAGES, BATCH per call
 *
 * Image n of a batch is synthetic (synthetic.h), rows padded to an odd stride.
 */
#define _POSIX_C_SOURCE 200809L
#include "ocr_deploy.h"
#include "synthetic.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static int die(const char *step, ocr_status status)
{
    fprintf(stderr, "capi_test: %s: %s: %s\n", step, ocr_status_name(status), ocr_last_error());
    return 1;
}

static ocr_pixel_format parse_format(const char *name)
{
    static const char *const names[] = {"RGB8", "BGR8", "RGBA8", "BGRA8", "GRAY8"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0)
            return i + 1;
    return 0;
}

static size_t pixel_size(ocr_pixel_format format)
{
    return format == OCR_PIXEL_GRAY8 ? 1 : format <= OCR_PIXEL_BGR8 ? 3 : 4;
}

/* Image n, w x h, in format, rows padded by 5 bytes: caller frees image->data. */
static int make_image(unsigned n, unsigned w, unsigned h, ocr_pixel_format format,
                      ocr_image *image)
{
    size_t size = pixel_size(format), stride = w * size + 5;
    uint8_t *data = malloc(stride * h);
    if (data == NULL)
        return 0;
    memset(data, 0xAB, stride * h);
    for (unsigned y = 0; y < h; y++)
        for (unsigned x = 0; x < w; x++) {
            uint8_t rgb[3] = {channel_value(n, y, x, 0), channel_value(n, y, x, 1),
                              channel_value(n, y, x, 2)};
            uint8_t *p = data + y * stride + x * size;
            switch (format) {
            case OCR_PIXEL_GRAY8: p[0] = rgb[0]; break;
            case OCR_PIXEL_RGB8: case OCR_PIXEL_RGBA8:
                p[0] = rgb[0], p[1] = rgb[1], p[2] = rgb[2]; break;
            default: p[0] = rgb[2], p[1] = rgb[1], p[2] = rgb[0]; break;
            }
            if (size == 4)
                p[3] = 200;
        }
    memset(image, 0, sizeof *image);
    image->struct_size = sizeof *image;
    image->data = data;
    image->width = w;
    image->height = h;
    image->stride_bytes = stride;
    image->pixel_format = format;
    return 1;
}

static int parse_spec(const char *spec, unsigned *w, unsigned *h, ocr_pixel_format *format)
{
    char name[16] = "RGB8";
    int fields = sscanf(spec, "%ux%u:%15s", w, h, name);
    *format = parse_format(name);
    return fields >= 2 && *format != 0;
}

static ocr_status open_model(const char *path, ocr_segmenter **s, ocr_model_info *info)
{
    ocr_status status = ocr_segmenter_create(path, NULL, s);
    if (status != OCR_OK)
        return status;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    return ocr_segmenter_info(*s, info);
}

static int cmd_info(const char *model)
{
    ocr_segmenter *s;
    ocr_model_info info;
    ocr_status status = open_model(model, &s, &info);
    if (status != OCR_OK)
        return die("open", status);
    printf("abi %u\nclasses %u\ninput %ux%ux%u\nlabel_type %d\nhas_scores %d\nmax_batch %u\n"
           "precision %s\nbackend %s\ndevice %s\nimages %ux%u to %ux%u\n",
           (unsigned)ocr_abi_version(), info.num_classes, info.input_width, info.input_height,
           info.input_channels, (int)info.label_type, (int)info.has_scores, info.max_batch,
           info.precision, info.backend, info.device, info.image_min_width,
           info.image_min_height, info.image_max_width, info.image_max_height);
    for (uint32_t k = 0; k < info.num_classes; k++)
        printf("class %u %u %u %u %s\n", k, info.palette[3 * k], info.palette[3 * k + 1],
               info.palette[3 * k + 2], info.class_names[k]);
    ocr_segmenter_destroy(s);
    return 0;
}

/* One batch of the given specs; label maps (u8/u16, rows padded) or scores to out. */
static int cmd_batch(const char *model, const char *out_path, const char *kind, int count,
                     char **specs)
{
    int scores = strcmp(kind, "hwc") == 0 || strcmp(kind, "chw") == 0;
    size_t element = scores ? sizeof(float) : strcmp(kind, "u16") == 0 ? 2 : 1;
    ocr_segmenter *s;
    ocr_model_info info;
    ocr_status status = open_model(model, &s, &info);
    if (status != OCR_OK)
        return die("open", status);
    ocr_image *images = calloc(count, sizeof *images);
    ocr_label_map *maps = calloc(count, sizeof *maps);
    ocr_score_map *score_maps = calloc(count, sizeof *score_maps);
    size_t *strides = calloc(count, sizeof *strides);
    for (int i = 0; i < count; i++) {
        unsigned w, h;
        ocr_pixel_format format;
        if (!parse_spec(specs[i], &w, &h, &format) || !make_image(i, w, h, format, &images[i])) {
            fprintf(stderr, "capi_test: bad spec %s\n", specs[i]);
            return 2;
        }
        if (scores) {
            size_t bytes = (size_t)w * h * info.num_classes * sizeof(float);
            score_maps[i].struct_size = sizeof score_maps[i];
            score_maps[i].data = malloc(bytes);
            score_maps[i].capacity_bytes = bytes;
            score_maps[i].layout = kind[0] == 'h' ? OCR_SCORES_HWC : OCR_SCORES_CHW;
        } else { /* rows padded by 3 elements, to check strided writes */
            strides[i] = (w + 3) * element;
            maps[i].struct_size = sizeof maps[i];
            maps[i].data = malloc(strides[i] * h);
            maps[i].capacity_bytes = strides[i] * h;
            maps[i].stride_bytes = strides[i];
            maps[i].label_type = element == 1 ? OCR_LABEL_U8 : OCR_LABEL_U16;
        }
    }
    status = scores ? ocr_segmenter_predict_scores(s, images, count, score_maps)
                    : ocr_segmenter_predict(s, images, count, maps);
    if (status != OCR_OK)
        return die("predict", status);
    FILE *out = fopen(out_path, "wb");
    for (int i = 0; out && i < count; i++) {
        if (scores) {
            fwrite(score_maps[i].data, 1, score_maps[i].capacity_bytes, out);
        } else {
            for (unsigned y = 0; y < images[i].height; y++)
                fwrite((char *)maps[i].data + y * strides[i], element, images[i].width, out);
        }
    }
    if (out == NULL || fclose(out) != 0) {
        fprintf(stderr, "capi_test: cannot write %s\n", out_path);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        free((void *)images[i].data);
        free(maps[i].data);
        free(score_maps[i].data);
    }
    free(images);
    free(maps);
    free(score_maps);
    free(strides);
    ocr_segmenter_destroy(s);
    printf("segmented %d images\n", count);
    return 0;
}

/* ---- errors -------------------------------------------------------------------------- */

static int failures;

static void expect(const char *name, ocr_status status, ocr_status wanted)
{
    const char *message = ocr_last_error();
    printf("%s\t%s\t%s\n", name, ocr_status_name(status), message);
    if (status != wanted || message[0] == '\0') {
        fprintf(stderr, "capi_test: %s: expected %s with a message, got %s\n", name,
                ocr_status_name(wanted), ocr_status_name(status));
        failures++;
    }
}

static void *error_in_thread(void *unused)
{
    (void)unused;
    return (void *)ocr_last_error(); /* this thread made no call: "" */
}

static int cmd_errors(const char *model, const char *not_a_model, const char *labels_only)
{
    ocr_segmenter *s = (ocr_segmenter *)1, *other;
    expect("create_null_path", ocr_segmenter_create(NULL, NULL, &s), OCR_E_INVALID_ARGUMENT);
    if (s != NULL)
        failures++, fprintf(stderr, "capi_test: *out not cleared on failure\n");
    expect("create_empty_path", ocr_segmenter_create("", NULL, &s), OCR_E_INVALID_ARGUMENT);
    expect("create_null_out", ocr_segmenter_create(model, NULL, NULL), OCR_E_INVALID_ARGUMENT);
    expect("create_missing_file", ocr_segmenter_create("/nonexistent/model.onnx", NULL, &s),
           OCR_E_BAD_ARTIFACT);
    expect("create_not_a_model", ocr_segmenter_create(not_a_model, NULL, &s),
           OCR_E_BAD_ARTIFACT);
    ocr_options options;
    memset(&options, 0, sizeof options);
    expect("create_options_size_0", ocr_segmenter_create(model, &options, &s),
           OCR_E_INVALID_ARGUMENT);
    options.struct_size = sizeof options;
    options.backend = "teapot";
    expect("create_bad_backend", ocr_segmenter_create(model, &options, &s),
           OCR_E_INVALID_ARGUMENT);
    options.backend = NULL;
    options.environment = "/nonexistent/python";
    expect("create_bad_environment", ocr_segmenter_create(model, &options, &s),
           OCR_E_ENVIRONMENT);

    ocr_model_info info;
    ocr_status status = open_model(model, &s, &info);
    if (status != OCR_OK)
        return die("open", status);
    if (ocr_last_error()[0] != '\0')
        failures++, fprintf(stderr, "capi_test: last error not cleared by a success\n");
    void *seen = NULL;
    pthread_t thread;
    ocr_segmenter_predict(NULL, NULL, 0, NULL); /* sets this thread's error */
    pthread_create(&thread, NULL, error_in_thread, NULL);
    pthread_join(thread, &seen);
    if (seen == NULL || ((const char *)seen)[0] != '\0')
        failures++, fprintf(stderr, "capi_test: last error is not per thread\n");

    options.environment = "/bin/sh"; /* an executable in another folder */
    expect("create_second_environment", ocr_segmenter_create(model, &options, &other),
           OCR_E_ENVIRONMENT);

    expect("info_null_segmenter", ocr_segmenter_info(NULL, &info), OCR_E_INVALID_ARGUMENT);
    expect("info_null_info", ocr_segmenter_info(s, NULL), OCR_E_INVALID_ARGUMENT);
    ocr_model_info small = {0};
    expect("info_size_0", ocr_segmenter_info(s, &small), OCR_E_INVALID_ARGUMENT);

    ocr_image image;
    make_image(0, 40, 30, OCR_PIXEL_RGB8, &image);
    uint16_t *buffer = malloc(2 * 40 * 30 + 2);
    ocr_label_map map = {sizeof map, buffer, 40 * 30, 0, OCR_LABEL_U8};
    if ((status = ocr_segmenter_predict(s, &image, 1, &map)) != OCR_OK)
        return die("predict", status);
    expect("predict_null_segmenter", ocr_segmenter_predict(NULL, &image, 1, &map),
           OCR_E_INVALID_ARGUMENT);
    expect("predict_null_images", ocr_segmenter_predict(s, NULL, 1, &map),
           OCR_E_INVALID_ARGUMENT);
    expect("predict_zero_count", ocr_segmenter_predict(s, &image, 0, &map),
           OCR_E_INVALID_ARGUMENT);
    expect("predict_null_results", ocr_segmenter_predict(s, &image, 1, NULL),
           OCR_E_INVALID_ARGUMENT);
    expect("predict_huge_count", ocr_segmenter_predict(s, &image, (size_t)-1 / 2, &map),
           OCR_E_INVALID_ARGUMENT);

    ocr_image bad = image;
    bad.struct_size = 0;
    expect("image_size_0", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);
    bad = image, bad.data = NULL;
    expect("image_null_data", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);
    bad = image, bad.width = 0;
    expect("image_zero_width", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);
    bad = image, bad.height = 0;
    expect("image_zero_height", ocr_segmenter_predict(s, &bad, 1, &map),
           OCR_E_INVALID_ARGUMENT);
    bad = image, bad.stride_bytes = 40 * 3 - 1;
    expect("image_short_stride", ocr_segmenter_predict(s, &bad, 1, &map),
           OCR_E_INVALID_ARGUMENT);
    bad = image, bad.pixel_format = 0;
    expect("image_format_0", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);
    bad = image, bad.pixel_format = 99;
    expect("image_format_99", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);
    bad = image, bad.height = 1u << 31, bad.stride_bytes = (size_t)1 << 62;
    expect("image_overflow", ocr_segmenter_predict(s, &bad, 1, &map), OCR_E_INVALID_ARGUMENT);

    ocr_label_map bad_map = map;
    bad_map.capacity_bytes = 40 * 30 - 1;
    expect("labels_too_small", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_BUFFER_TOO_SMALL);
    bad_map = map, bad_map.stride_bytes = 41, bad_map.capacity_bytes = 41 * 30 - 2;
    expect("labels_strided_too_small", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_BUFFER_TOO_SMALL);
    bad_map = map, bad_map.data = NULL;
    expect("labels_null_data", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    bad_map = map, bad_map.label_type = 7;
    expect("labels_bad_type", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    bad_map = map, bad_map.struct_size = 8;
    expect("labels_size_8", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    bad_map = map, bad_map.stride_bytes = 39;
    expect("labels_short_stride", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    bad_map = map, bad_map.label_type = OCR_LABEL_U16, bad_map.data = (char *)buffer + 1,
    bad_map.capacity_bytes = 2 * 40 * 30;
    expect("labels_misaligned", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    bad_map = map, bad_map.label_type = OCR_LABEL_U16, bad_map.stride_bytes = 81,
    bad_map.capacity_bytes = 2 * 40 * 30 + 2;
    expect("labels_odd_u16_stride", ocr_segmenter_predict(s, &image, 1, &bad_map),
           OCR_E_INVALID_ARGUMENT);
    ocr_image two[2] = {image, image};
    ocr_label_map maps[2] = {map, map};
    maps[1].capacity_bytes = 10;
    expect("batch_second_too_small", ocr_segmenter_predict(s, two, 2, maps),
           OCR_E_BUFFER_TOO_SMALL);

    float *scores = malloc(40 * 30 * info.num_classes * sizeof(float));
    ocr_score_map score_map = {sizeof score_map, scores, 40 * 30 * info.num_classes * 4 - 4,
                               OCR_SCORES_HWC};
    expect("scores_too_small", ocr_segmenter_predict_scores(s, &image, 1, &score_map),
           OCR_E_BUFFER_TOO_SMALL);
    score_map.capacity_bytes += 4, score_map.layout = 9;
    expect("scores_bad_layout", ocr_segmenter_predict_scores(s, &image, 1, &score_map),
           OCR_E_INVALID_ARGUMENT);
    score_map.layout = OCR_SCORES_CHW, score_map.data = (float *)((char *)scores + 2);
    expect("scores_misaligned", ocr_segmenter_predict_scores(s, &image, 1, &score_map),
           OCR_E_INVALID_ARGUMENT);

    status = ocr_segmenter_create(labels_only, NULL, &other);
    if (status != OCR_OK)
        return die("open labels-only", status);
    score_map.data = scores;
    expect("scores_labels_only", ocr_segmenter_predict_scores(other, &image, 1, &score_map),
           OCR_E_UNSUPPORTED);
    ocr_segmenter_destroy(other);

    status = ocr_segmenter_predict(s, &image, 1, &map);
    if (status != OCR_OK || ocr_last_error()[0] != '\0')
        failures++, fprintf(stderr, "capi_test: a good call after the bad ones failed\n");
    ocr_label_map zeroed = {sizeof zeroed, (char *)buffer + 40 * 30, 40 * 30, 0, 0};
    status = ocr_segmenter_predict(s, &image, 1, &zeroed); /* label_type 0: the model's */
    if (status != OCR_OK || memcmp(buffer, (char *)buffer + 40 * 30, 40 * 30) != 0)
        failures++, fprintf(stderr, "capi_test: label_type 0 does not give the model's\n");
    ocr_segmenter_destroy(NULL);
    ocr_segmenter_destroy(s);
    free((void *)image.data);
    free(buffer);
    free(scores);
    printf("%s\n", failures ? "FAILED" : "all bad inputs refused");
    return failures != 0;
}

/* ---- threads ------------------------------------------------------------------------- */

#define THREAD_IMAGES 12

typedef struct {
    ocr_segmenter *s;
    const ocr_image *images;
    uint8_t *const *expected;
    int thread, predictions, mismatches;
    ocr_status status;
} worker;

static size_t labels_size(const ocr_image *image)
{
    return (size_t)image->width * image->height;
}

static void *work(void *arg)
{
    worker *w = arg;
    uint8_t *labels = malloc(300 * 300);
    for (int j = 0; j < w->predictions; j++) {
        int n = (w->thread * 5 + j) % THREAD_IMAGES;
        ocr_label_map map = {sizeof map, labels, 300 * 300, 0, OCR_LABEL_U8};
        ocr_status status = ocr_segmenter_predict(w->s, &w->images[n], 1, &map);
        if (status != OCR_OK) {
            w->status = status;
            fprintf(stderr, "capi_test: thread %d: %s\n", w->thread, ocr_last_error());
            break;
        }
        w->mismatches += memcmp(labels, w->expected[n], labels_size(&w->images[n])) != 0;
    }
    free(labels);
    return NULL;
}

static int cmd_threads(const char *model, int threads, int predictions)
{
    ocr_segmenter *s;
    ocr_model_info info;
    ocr_status status = open_model(model, &s, &info);
    if (status != OCR_OK)
        return die("open", status);
    ocr_image images[THREAD_IMAGES];
    uint8_t *expected[THREAD_IMAGES];
    for (int n = 0; n < THREAD_IMAGES; n++) { /* sizes 24x20 ... 288x167, mixed formats */
        make_image(n, 24 + 24 * n, 20 + 13 * n, 1 + n % 5, &images[n]);
        expected[n] = malloc(labels_size(&images[n]));
        ocr_label_map map = {sizeof map, expected[n], labels_size(&images[n]), 0, OCR_LABEL_U8};
        if ((status = ocr_segmenter_predict(s, &images[n], 1, &map)) != OCR_OK)
            return die("serial predict", status);
    }
    pthread_t ids[64];
    worker workers[64];
    if (threads > 64)
        threads = 64;
    for (int t = 0; t < threads; t++) {
        workers[t] = (worker){s, images, expected, t, predictions, 0, OCR_OK};
        pthread_create(&ids[t], NULL, work, &workers[t]);
    }
    int mismatches = 0, failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        mismatches += workers[t].mismatches;
        failed += workers[t].status != OCR_OK;
    }
    for (int n = 0; n < THREAD_IMAGES; n++) {
        free((void *)images[n].data);
        free(expected[n]);
    }
    ocr_segmenter_destroy(s);
    printf("%d threads x %d predictions: %d differ from serial, %d threads failed\n", threads,
           predictions, mismatches, failed);
    return mismatches || failed;
}

/* ---- memory -------------------------------------------------------------------------- */

static long rss_kib(const char *field)
{
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    long value = -1;
    size_t length = strlen(field);
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, field, length) == 0 && line[length] == ':')
            value = atol(line + length + 1);
    if (status)
        fclose(status);
    return value;
}

static int cmd_lifecycle(const char *model, int times)
{
    ocr_image image;
    make_image(0, 64, 48, OCR_PIXEL_BGR8, &image);
    uint8_t *labels = malloc(64 * 48);
    long after_first = 0;
    for (int i = 0; i < times; i++) {
        ocr_segmenter *s;
        ocr_status status = ocr_segmenter_create(model, NULL, &s);
        if (status != OCR_OK)
            return die("create", status);
        ocr_label_map map = {sizeof map, labels, 64 * 48, 0, OCR_LABEL_U8};
        if ((status = ocr_segmenter_predict(s, &image, 1, &map)) != OCR_OK)
            return die("predict", status);
        ocr_segmenter_destroy(s);
        if (i == 9 || (times < 10 && i == 0))
            after_first = rss_kib("VmRSS");
    }
    printf("rss_kib_after_10 %ld\nrss_kib_after_%d %ld\n", after_first, times, rss_kib("VmRSS"));
    free(labels);
    free((void *)image.data);
    return 0;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_repeat(const char *model, int count, const char *spec, int batch)
{
    unsigned w, h;
    ocr_pixel_format format;
    if (!parse_spec(spec, &w, &h, &format) || count < 1 || batch < 1)
        return 2;
    ocr_segmenter *s;
    ocr_model_info info;
    ocr_status status = open_model(model, &s, &info);
    if (status != OCR_OK)
        return die("open", status);
    long after_open = rss_kib("VmHWM"), after_tenth = 0;
    ocr_image *images = calloc(batch, sizeof *images);
    ocr_label_map *maps = calloc(batch, sizeof *maps);
    for (int b = 0; b < batch; b++) {
        make_image(b, w, h, format, &images[b]);
        maps[b] = (ocr_label_map){sizeof maps[b], malloc((size_t)w * h * 2), (size_t)w * h * 2,
                                  0, info.label_type};
    }
    int calls = (count + batch - 1) / batch;
    double *times = malloc(calls * sizeof *times);
    for (int n = 0; n < calls; n++) {
        double start = seconds();
        status = ocr_segmenter_predict(s, images, batch, maps);
        times[n] = seconds() - start;
        if (status != OCR_OK)
            return die("predict", status);
        if (n == calls / 10)
            after_tenth = rss_kib("VmRSS");
    }
    qsort(times, calls, sizeof *times, compare_doubles);
    printf("images %d\ncalls %d\nmedian_ms %.4f\npeak_rss_kib_after_open %ld\n"
           "rss_kib_after_tenth %ld\nrss_kib_at_end %ld\npeak_rss_kib %ld\n", calls * batch,
           calls, times[calls / 2] * 1e3, after_open, after_tenth, rss_kib("VmRSS"),
           rss_kib("VmHWM"));
    for (int b = 0; b < batch; b++) {
        free((void *)images[b].data);
        free(maps[b].data);
    }
    free(images);
    free(maps);
    free(times);
    ocr_segmenter_destroy(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "info") == 0)
        return cmd_info(argv[2]);
    if (argc >= 6 && (strcmp(argv[1], "predict") == 0 || strcmp(argv[1], "scores") == 0))
        return cmd_batch(argv[2], argv[3], argv[4], argc - 5, argv + 5);
    if (argc == 5 && strcmp(argv[1], "errors") == 0)
        return cmd_errors(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "threads") == 0)
        return cmd_threads(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "lifecycle") == 0)
        return cmd_lifecycle(argv[2], atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "repeat") == 0)
        return cmd_repeat(argv[2], atoi(argv[3]), argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: see the comment at the top of capi_test.c\n");
    return 2;
}
