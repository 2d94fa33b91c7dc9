/*
 * segment: segment an image with an exported OCRNet through the C ABI (ocr_deploy.h only).
 *
 *   segment MODEL.onnx IMAGE.ppm|IMAGE.pgm LABELS.pgm
 *
 * Reads a binary PPM (P6, colour) or PGM (P5, grey) image of any size, writes its label map
 * at the same size as a PGM (8-bit, or 16-bit for models with more than 256 classes) and
 * prints how many pixels each class has. Build: see examples/README.md.
 */
#include <ocr_deploy.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A binary PPM/PGM with maxval 255: pixels in a malloc'ed buffer, or NULL after a
 * one-line error (a file that cannot be opened is reported as such, not as a bad format). */
static unsigned char *read_pnm(const char *path, unsigned *width, unsigned *height,
                               ocr_pixel_format *format)
{
    FILE *file = fopen(path, "rb");
    char magic[3] = {0};
    unsigned maxval = 0;
    unsigned char *pixels = NULL;
    if (file == NULL) {
        fprintf(stderr, "segment: %s: expected an image file, found none (%s); check the path\n",
                path, strerror(errno));
        return NULL;
    }
    if (fscanf(file, "%2s", magic) != 1)
        goto done;
    int channels = strcmp(magic, "P6") == 0 ? 3 : strcmp(magic, "P5") == 0 ? 1 : 0;
    unsigned *fields[3] = {width, height, &maxval};
    for (int i = 0; channels && i < 3; i++) {
        int c;
        while ((c = fgetc(file)) == '#' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
            if (c == '#')
                while ((c = fgetc(file)) != '\n' && c != EOF) {}
        ungetc(c, file);
        if (fscanf(file, "%u", fields[i]) != 1)
            channels = 0;
    }
    if (!channels || maxval != 255 || *width == 0 || *height == 0 || fgetc(file) == EOF)
        goto done;
    size_t size = (size_t)*width * *height * channels;
    pixels = malloc(size);
    if (pixels && fread(pixels, 1, size, file) != size) {
        free(pixels);
        pixels = NULL;
    }
    *format = channels == 3 ? OCR_PIXEL_RGB8 : OCR_PIXEL_GRAY8;
done:
    fclose(file);
    if (pixels == NULL)
        fprintf(stderr, "segment: %s: expected a binary PPM (P6) or PGM (P5) with maxval 255\n",
                path);
    return pixels;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.onnx IMAGE.ppm LABELS.pgm\n", argv[0]);
        return 2;
    }
    unsigned width, height;
    ocr_pixel_format format;
    unsigned char *pixels = read_pnm(argv[2], &width, &height, &format);
    if (pixels == NULL)
        return 2;

    ocr_segmenter *segmenter = NULL;
    ocr_model_info info = {sizeof(ocr_model_info)};
    if (ocr_segmenter_create(argv[1], NULL, &segmenter) != OCR_OK ||
        ocr_segmenter_info(segmenter, &info) != OCR_OK) {
        fprintf(stderr, "segment: %s\n", ocr_last_error());
        free(pixels);
        ocr_segmenter_destroy(segmenter);
        return 1;
    }

    /* The label map: the caller owns the buffer, sized for the image. */
    size_t element = info.label_type == OCR_LABEL_U8 ? 1 : 2;
    void *labels = malloc((size_t)width * height * element);
    ocr_image image = {sizeof(ocr_image), pixels, width, height, 0, format};
    ocr_label_map map = {sizeof(ocr_label_map), labels, (size_t)width * height * element, 0,
                         info.label_type};
    if (labels == NULL || ocr_segmenter_predict(segmenter, &image, 1, &map) != OCR_OK) {
        fprintf(stderr, "segment: %s\n", labels ? ocr_last_error() : "out of memory");
        return 1;
    }

    FILE *out = fopen(argv[3], "wb");
    int written = out != NULL &&
                  fprintf(out, "P5\n%u %u\n%u\n", width, height, element == 1 ? 255u : 65535u) > 0;
    size_t *counts = calloc(info.num_classes, sizeof *counts);
    for (size_t i = 0; written && i < (size_t)width * height; i++) {
        unsigned label = element == 1 ? ((unsigned char *)labels)[i]
                                      : ((unsigned short *)labels)[i];
        if (label < info.num_classes)
            counts[label]++;
        if (element == 1)
            written = fputc((int)label, out) != EOF;
        else /* 16-bit PGM samples are big-endian */
            written = fputc((int)(label >> 8), out) != EOF && fputc((int)(label & 255), out) != EOF;
    }
    if (out == NULL || fclose(out) != 0 || !written) {
        fprintf(stderr, "segment: cannot write %s\n", argv[3]);
        return 1;
    }
    printf("%s: %ux%u, %s on %s (%s)\n", argv[2], width, height, info.precision, info.backend,
           info.device);
    for (uint32_t k = 0; k < info.num_classes; k++)
        if (counts[k])
            printf("  %s: %zu px\n", info.class_names[k], counts[k]);

    free(counts);
    free(labels);
    free(pixels);
    ocr_segmenter_destroy(segmenter);
    return 0;
}
