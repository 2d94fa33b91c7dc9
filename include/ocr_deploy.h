/*
 * ocr_deploy.h: the C ABI of ocr-deploy (semantic segmentation with an exported OCRNet).
 *
 * One header, one shared library (libocr_deploy.so), opaque handles and plain structs.
 * C99; usable from C++ (extern "C"), and from Rust, Go, C# ... through their C FFI.
 *
 *     ocr_segmenter *seg;
 *     if (ocr_segmenter_create("model.onnx", NULL, &seg) != OCR_OK) {
 *         fprintf(stderr, "%s\n", ocr_last_error());
 *         return 1;
 *     }
 *     ocr_image image = {sizeof(ocr_image), pixels, width, height, 0, OCR_PIXEL_RGB8};
 *     ocr_label_map map = {sizeof(ocr_label_map), labels, width * height, 0, OCR_LABEL_U8};
 *     ocr_status status = ocr_segmenter_predict(seg, &image, 1, &map);
 *     ocr_segmenter_destroy(seg);
 *
 * CONTRACT (what every implementation of this ABI provides; code may rely on it):
 *   - Function names, signatures, struct layouts and constant values of this ABI version.
 *   - Every function but ocr_abi_version, ocr_last_error, ocr_status_name and
 *     ocr_segmenter_destroy returns an ocr_status. Bad input (NULL pointers, zero sizes,
 *     strides smaller than a row, buffers too small, unknown enum values, a file that is
 *     not a model) gives a non-OK status and a one-line message from ocr_last_error(),
 *     never a crash. Memory the caller passes must still be valid and as large as the
 *     structs say: the library cannot check a pointer into freed or too-short memory.
 *   - Images are borrowed for the duration of the call only; the library keeps no pointer
 *     to them. Results are written into buffers the caller allocates and owns. Pointers
 *     that the library returns (ocr_model_info strings and palette) are owned by the
 *     segmenter and valid until ocr_segmenter_destroy; ocr_last_error()'s string is owned
 *     by the library and valid on the calling thread until its next ocr_* call.
 *   - Label maps are at each image's own size, whatever size the model runs at; one label
 *     map from ocr_segmenter_predict equals the Python runtime's Segmenter.predict for the
 *     same pixels (same resizing, colour handling and post-processing, read from the
 *     artifact's metadata). An end-to-end artifact (ocr-build-engine --end-to-end: the
 *     resizing and post-processing are in its graph) takes images of the size, or range of
 *     sizes, it was built for (ocr_model_info.image_*, ABI 1.1); other sizes are
 *     OCR_E_INVALID_ARGUMENT.
 *   - Thread safety: one segmenter may be used from several threads at once
 *     (ocr_segmenter_info, _predict, _predict_scores); results equal those of serial calls.
 *     ocr_segmenter_destroy must not run while another call on the same segmenter is in
 *     flight. ocr_last_error() is per thread.
 *   - On a failed call, the contents of result buffers are unspecified.
 *   - Structs that may grow carry their size as their first field: set struct_size to
 *     sizeof(the struct) as your header declares it. A later minor ABI version may append
 *     fields; the library reads and writes only the fields your struct_size covers (fields
 *     it does not cover take their defaults). In arrays (images, results), the library
 *     steps from element to element by the first element's struct_size, and every element
 *     must carry the same struct_size.
 *
 * THIS IMPLEMENTATION (libocr_deploy.so built from capi/; may change, do not rely on it):
 *   - It runs the TensorFlow-free Python runtime (ocr_deploy.runtime.Segmenter over ONNX
 *     Runtime or TensorRT) inside the library through embedded CPython. The interpreter is
 *     started once per process, on the first ocr_segmenter_create, in the environment named
 *     by ocr_options.environment, else the OCR_DEPLOY_PYTHON environment variable, else the
 *     environment the library was built against. That environment needs ocr-deploy and its
 *     base dependencies (numpy, onnxruntime, pillow), not TensorFlow. Later creates that name
 *     another environment fail with OCR_E_ENVIRONMENT (one process, one interpreter). When
 *     the host process already runs Python (the library loaded from Python), that
 *     interpreter is used and the environment settings are ignored.
 *   - The interpreter is isolated (PYTHONPATH, PYTHONHOME and the user site-packages are
 *     ignored), installs no signal handlers, and is never finalised: its memory (a few tens
 *     of MiB with NumPy and ONNX Runtime loaded) stays until the process exits.
 *   - Python's global interpreter lock is released between calls and while the backend runs
 *     the model, so several threads make progress; image conversion and post-processing
 *     run under the lock.
 *   - Pixel conversion: BGR8/RGBA8/BGRA8 are reordered to RGB (alpha dropped); GRAY8 is
 *     repeated into three channels for a colour model. A greyscale (1-channel) model takes
 *     GRAY8 only. An end-to-end artifact gets the pixels in its own colour order, copied
 *     once into its input batch: BGR8 (or BGRA8) to one built with --bgr, RGB8 (or RGBA8)
 *     to an RGB one need no reordering.
 */
#ifndef OCR_DEPLOY_H
#define OCR_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  ifdef OCR_DEPLOY_BUILDING
#    define OCR_API __declspec(dllexport)
#  else
#    define OCR_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define OCR_API __attribute__((visibility("default")))
#else
#  define OCR_API
#endif

/* ---- versions ------------------------------------------------------------------------ */

/* The ABI version this header describes: major in the high 16 bits, minor in the low 16.
 * A new major version may break compatibility; a new minor version only adds functions,
 * enum values and trailing struct fields. */
#define OCR_ABI_VERSION_MAJOR 1
#define OCR_ABI_VERSION_MINOR 1
#define OCR_ABI_VERSION ((uint32_t)((OCR_ABI_VERSION_MAJOR << 16) | OCR_ABI_VERSION_MINOR))

/* The ABI version of the library loaded at run time. Compatible with this header when
 * (ocr_abi_version() >> 16) == OCR_ABI_VERSION_MAJOR and its minor is >= the one you use. */
OCR_API uint32_t ocr_abi_version(void);

/* ---- statuses and errors ------------------------------------------------------------- */

typedef int32_t ocr_status;
enum {
    OCR_OK = 0,
    OCR_E_INVALID_ARGUMENT = 1, /* NULL pointer, zero size, bad stride, unknown enum value,
                                   struct_size too small, a pixel format the model cannot
                                   take, a label type too narrow for the classes */
    OCR_E_BAD_ARTIFACT = 2,     /* missing, empty, corrupt or foreign file; not an exported
                                   OCRNet; built for another GPU or backend version */
    OCR_E_BUFFER_TOO_SMALL = 3, /* a result buffer's capacity_bytes is below what it needs */
    OCR_E_UNSUPPORTED = 4,      /* the model cannot do this (scores from a labels-only model) */
    OCR_E_ENVIRONMENT = 5,      /* the implementation's runtime environment cannot start */
    OCR_E_OUT_OF_MEMORY = 6,
    OCR_E_INTERNAL = 7          /* a bug: please report it with ocr_last_error()'s text */
};

/* The message of the last failed ocr_* call on this thread, one line ("WHERE: expected
 * ..., found ...; what to do"), or "" after a call that succeeded. Never NULL. */
OCR_API const char *ocr_last_error(void);

/* A status's name, e.g. "OCR_E_BUFFER_TOO_SMALL"; "unknown status" for other values.
 * Static storage; never NULL. */
OCR_API const char *ocr_status_name(ocr_status status);

/* ---- enums used in structs (int32_t so their size never depends on the compiler) ----- */

typedef int32_t ocr_pixel_format;
enum {
    OCR_PIXEL_RGB8 = 1,  /* 3 bytes per pixel: R, G, B */
    OCR_PIXEL_BGR8 = 2,  /* 3 bytes per pixel: B, G, R (OpenCV's default) */
    OCR_PIXEL_RGBA8 = 3, /* 4 bytes per pixel: R, G, B, A (alpha ignored) */
    OCR_PIXEL_BGRA8 = 4, /* 4 bytes per pixel: B, G, R, A (alpha ignored) */
    OCR_PIXEL_GRAY8 = 5  /* 1 byte per pixel */
};

typedef int32_t ocr_label_type;
enum {
    OCR_LABEL_U8 = 1,  /* uint8_t per pixel: models with at most 256 classes */
    OCR_LABEL_U16 = 2  /* uint16_t per pixel: any model (up to 65536 classes) */
};

typedef int32_t ocr_score_layout;
enum {
    OCR_SCORES_HWC = 1, /* score of class k at pixel (y, x): data[(y * width + x) * K + k] */
    OCR_SCORES_CHW = 2  /* score of class k at pixel (y, x): data[(k * height + y) * width + x] */
};

/* ---- structs ------------------------------------------------------------------------- */

/* How to open an artifact. Pass NULL to ocr_segmenter_create for all defaults; a zeroed
 * struct with struct_size set means the defaults too. Strings are borrowed for the call. */
typedef struct ocr_options {
    size_t struct_size;      /* sizeof(ocr_options) */
    const char *backend;     /* NULL or "auto" (from the file: .onnx -> "onnxruntime",
                                .engine -> "tensorrt"), "onnxruntime", "tensorrt" */
    const char *providers;   /* ONNX Runtime execution providers in order of preference,
                                comma-separated ("tensorrt", "cuda", "cpu" or full names);
                                NULL: the best available */
    int32_t device_id;       /* GPU ordinal; 0 by default */
    uint32_t threads;        /* CPU threads per inference; 0: the backend's default */
    uint32_t max_batch;      /* most images run at once; 0: no cap beyond the artifact's */
    const char *environment; /* implementation-specific runtime environment; for this
                                implementation a Python environment: its folder or its
                                bin/python. NULL: OCR_DEPLOY_PYTHON, else the build's */
} ocr_options;

/* What a segmenter runs. Filled by ocr_segmenter_info; pointers owned by the segmenter. */
typedef struct ocr_model_info {
    size_t struct_size;              /* sizeof(ocr_model_info), set by the caller */
    uint32_t num_classes;            /* K */
    uint32_t input_width;            /* the model's own input size (images of any size are */
    uint32_t input_height;           /* resized to it, and results back to theirs) */
    uint32_t input_channels;         /* 3 (colour) or 1 (greyscale: takes GRAY8 only) */
    ocr_label_type label_type;       /* the narrowest label type that holds every class */
    int32_t has_scores;              /* 1 when ocr_segmenter_predict_scores works, else 0 */
    uint32_t max_batch;              /* most images run at once; 0: no cap */
    const char *const *class_names;  /* K UTF-8 names ("class_<k>" where the model has none) */
    const uint8_t *palette;          /* K x 3 bytes: R, G, B of each class's display colour */
    const char *precision;           /* "fp32", "fp16" or "int8" */
    const char *backend;             /* what runs the model: "onnxruntime", "tensorrt" */
    const char *device;              /* where: "cpu" or "cuda" */
    /* ABI 1.1: the image sizes an end-to-end artifact takes, from min to max (equal: one
     * fixed size); 0 for a plain artifact, which takes images of any size. */
    uint32_t image_min_width;
    uint32_t image_min_height;
    uint32_t image_max_width;
    uint32_t image_max_height;
} ocr_model_info;

/* An image of any size, borrowed for the call. */
typedef struct ocr_image {
    size_t struct_size;             /* sizeof(ocr_image) */
    const void *data;               /* first pixel of the top row */
    uint32_t width;                 /* pixels, >= 1 */
    uint32_t height;                /* rows, >= 1 */
    size_t stride_bytes;            /* bytes from one row to the next, >= width * bytes per
                                       pixel; 0: rows are packed */
    ocr_pixel_format pixel_format;  /* OCR_PIXEL_* */
} ocr_image;

/* Where to write one image's label map: height rows of width class indices (the image's
 * size), in a buffer the caller owns. Needs capacity_bytes >=
 * (height - 1) * row stride + width * element size. */
typedef struct ocr_label_map {
    size_t struct_size;         /* sizeof(ocr_label_map) */
    void *data;                 /* aligned to the element type */
    size_t capacity_bytes;      /* the size of data */
    size_t stride_bytes;        /* bytes from one row to the next, a multiple of the element
                                   size; 0: width * element size */
    ocr_label_type label_type;  /* OCR_LABEL_U8 (models with <= 256 classes) or _U16;
                                   0: the model's, ocr_model_info.label_type */
} ocr_label_map;

/* Where to write one image's per-class scores: K float32 values per pixel (the model's
 * logits, before softmax, resized bilinearly to the image's size), packed, in the given
 * layout. Needs capacity_bytes >= width * height * K * sizeof(float). */
typedef struct ocr_score_map {
    size_t struct_size;        /* sizeof(ocr_score_map) */
    float *data;               /* aligned to float */
    size_t capacity_bytes;     /* the size of data */
    ocr_score_layout layout;   /* OCR_SCORES_HWC or OCR_SCORES_CHW; 0: HWC */
} ocr_score_map;

/* ---- the segmenter ------------------------------------------------------------------- */

typedef struct ocr_segmenter ocr_segmenter; /* opaque */

/* Open an artifact (.onnx from ocr-export / ocr-build-engine, or a TensorRT .engine) and
 * store a new segmenter in *out (set to NULL on failure). artifact_path and options are
 * borrowed for the call. Free the segmenter with ocr_segmenter_destroy. */
OCR_API ocr_status ocr_segmenter_create(const char *artifact_path, const ocr_options *options,
                                        ocr_segmenter **out);

/* Describe the model: fills the fields that info->struct_size covers. */
OCR_API ocr_status ocr_segmenter_info(const ocr_segmenter *segmenter, ocr_model_info *info);

/* Segment count >= 1 images (any sizes, mixed formats): results[i] receives the label map
 * of images[i] at that image's size. Large counts are split into batches the model takes. */
OCR_API ocr_status ocr_segmenter_predict(ocr_segmenter *segmenter, const ocr_image *images,
                                         size_t count, ocr_label_map *results);

/* Like ocr_segmenter_predict, but per-class scores (see ocr_score_map). Models exported
 * with labels only have no scores: OCR_E_UNSUPPORTED (see ocr_model_info.has_scores). */
OCR_API ocr_status ocr_segmenter_predict_scores(ocr_segmenter *segmenter,
                                                const ocr_image *images, size_t count,
                                                ocr_score_map *results);

/* Release a segmenter; NULL is ignored. No call on it may be in flight. */
OCR_API void ocr_segmenter_destroy(ocr_segmenter *segmenter);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OCR_DEPLOY_H */
