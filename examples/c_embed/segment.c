/*
 * segment.c: a C program that runs an exported OCRNet through ocr_deploy.runtime by
 * embedding CPython, on buffers that the C program allocates and owns.
 *
 *   segment PYTHON MODEL.onnx OUT.raw
 *
 * PYTHON is the interpreter of the environment where ocr-deploy is installed (e.g.
 * .venv/bin/python): the embedded interpreter takes its prefix, so it finds that
 * environment's packages. The program fills a float32 input buffer (a synthetic test
 * image, normalised as the model's metadata says), passes its address and the address of
 * an int32 label buffer to Segmenter.run_device, and writes the labels to OUT.raw
 * (int32, native byte order, H*W values). Python never copies either buffer: ONNX Runtime
 * reads and writes them in place through I/O binding.
 *
 * Build (see README.md):
 *   cc segment.c $(python3-config --includes) -L$LIBDIR -lpython3.X -Wl,-rpath,$LIBDIR
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the pending Python exception in one line (OcrDeployError messages are) and fail. */
static int fail(const char *step)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    fprintf(stderr, "segment: %s failed: %s\n", step, text ? PyUnicode_AsUTF8(text) : "?");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return 1;
}

/* A long attribute of a tuple item, e.g. input_shape(1)[2]. */
static long item(PyObject *tuple, Py_ssize_t index)
{
    return PyLong_AsLong(PyTuple_GetItem(tuple, index));
}

/* mean/std[channel] from the metadata's normalization dict; fallback when in_graph. */
static double norm_value(PyObject *norm, const char *key, int channel, double fallback)
{
    PyObject *in_graph = PyDict_GetItemString(norm, "in_graph");
    if (in_graph != NULL && PyObject_IsTrue(in_graph))
        return fallback;
    PyObject *values = PyDict_GetItemString(norm, key);
    return values ? PyFloat_AsDouble(PyList_GetItem(values, channel)) : fallback;
}

/* The synthetic test image: the same formula is used by tests/test_runtime_c_embed.py. */
static double pixel(long y, long x, long c)
{
    return (double)((x * 7 + y * 13 + c * 50) % 256);
}

static int run(const char *model_path, const char *out_path)
{
    PyObject *module = PyImport_ImportModule("ocr_deploy.runtime");
    if (module == NULL)
        return fail("import ocr_deploy.runtime");
    PyObject *segmenter = PyObject_CallMethod(PyObject_GetAttrString(module, "Segmenter"),
                                              "open", "s", model_path);
    if (segmenter == NULL)
        return fail("Segmenter.open");

    PyObject *metadata = PyObject_GetAttrString(segmenter, "metadata");
    PyObject *layout = PyObject_GetAttrString(metadata, "input_layout");
    PyObject *norm = PyObject_GetAttrString(metadata, "normalization");
    PyObject *labels_name = PyObject_GetAttrString(segmenter, "labels_output");
    PyObject *in_dtype = PyObject_Str(PyObject_GetAttrString(segmenter, "input_dtype"));
    if (labels_name == Py_None || strcmp(PyUnicode_AsUTF8(in_dtype), "float32") != 0) {
        fprintf(stderr, "segment: this example needs a float32 input and an in-graph labels "
                        "output (export with --argmax)\n");
        return 1;
    }
    int nchw = strcmp(PyUnicode_AsUTF8(layout), "NCHW") == 0;
    PyObject *in_shape = PyObject_CallMethod(segmenter, "input_shape", "i", 1);
    long height = item(in_shape, nchw ? 2 : 1), width = item(in_shape, nchw ? 3 : 2);
    long channels = item(in_shape, nchw ? 1 : 3);
    PyObject *out_shape = PyObject_CallMethod(segmenter, "output_shape", "Oi", labels_name, 1);
    long out_h = item(out_shape, 1), out_w = item(out_shape, 2);

    /* Buffers owned by this program. */
    float *input = malloc(sizeof(float) * height * width * channels);
    int32_t *labels = malloc(sizeof(int32_t) * out_h * out_w);
    if (input == NULL || labels == NULL) {
        fprintf(stderr, "segment: out of memory\n");
        return 1;
    }
    for (long y = 0; y < height; y++)
        for (long x = 0; x < width; x++)
            for (long c = 0; c < channels; c++) {
                double value = (pixel(y, x, c) - norm_value(norm, "mean", (int)c, 0.0)) /
                               norm_value(norm, "std", (int)c, 1.0);
                long at = nchw ? (c * height + y) * width + x : (y * width + x) * channels + c;
                input[at] = (float)value;
            }

    PyObject *outputs = PyDict_New();
    PyDict_SetItem(outputs, labels_name, PyLong_FromVoidPtr(labels));
    PyObject *done = PyObject_CallMethod(segmenter, "run_device", "NOi",
                                         PyLong_FromVoidPtr(input), outputs, 1);
    if (done == NULL)
        return fail("Segmenter.run_device");

    FILE *out = fopen(out_path, "wb");
    if (out == NULL || fwrite(labels, sizeof(int32_t), out_h * out_w, out) != (size_t)(out_h * out_w)) {
        fprintf(stderr, "segment: cannot write %s\n", out_path);
        return 1;
    }
    fclose(out);
    long counts[256] = {0};
    for (long i = 0; i < out_h * out_w; i++)
        if (labels[i] >= 0 && labels[i] < 256)
            counts[labels[i]]++;
    printf("segmented a %ldx%ld image with %s:", width, height, model_path);
    for (int k = 0; k < 256; k++)
        if (counts[k])
            printf(" class %d: %ld px;", k, counts[k]);
    printf("\n");

    PyObject_CallMethod(segmenter, "close", NULL);
    free(input);
    free(labels);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PYTHON MODEL.onnx OUT.raw\n", argv[0]);
        return 2;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    /* Take the prefix (and so the site-packages) of the given interpreter's environment. */
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, argv[1]);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "segment: cannot start Python: %s\n", status.err_msg);
        return 1;
    }
    int code = run(argv[2], argv[3]);
    if (Py_FinalizeEx() < 0)
        code = code ? code : 1;
    return code;
}
