// capi_test_cpp: exercises the C++ wrapper (ocr_deploy.hpp); run by tests/test_capi.py.
//
//   capi_test_cpp MODEL LABELS.raw SCORES_HWC.raw SCORES_CHW.raw
//
// Segments synthetic images 0 (40x30) and 1 (17x61) in one batch through a moved-from and
// moved-to Segmenter; writes the labels as uint16 (LabelMap::at), the scores in both
// layouts, and prints the error of an empty batch.
#include "ocr_deploy.hpp"
#include "synthetic.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

int main(int argc, char **argv)
{
    if (argc != 5) {
        std::cerr << "usage: capi_test_cpp MODEL LABELS.raw SCORES_HWC.raw SCORES_CHW.raw\n";
        return 2;
    }
    try {
        ocr::Segmenter first(argv[1]);
        ocr::Segmenter second(std::move(first));  // move construction
        ocr::Segmenter segmenter(argv[1]);
        segmenter = std::move(second);            // move assignment releases the other one
        if (first.handle() != nullptr || second.handle() != nullptr)
            throw std::runtime_error("moved-from segmenters still hold a handle");

        const unsigned sizes[2][2] = {{40, 30}, {17, 61}};
        std::vector<std::vector<uint8_t>> pixels(2);
        std::vector<ocr_image> images;
        for (unsigned n = 0; n < 2; n++) {
            unsigned width = sizes[n][0], height = sizes[n][1];
            for (unsigned y = 0; y < height; y++)
                for (unsigned x = 0; x < width; x++)
                    for (unsigned c = 0; c < 3; c++)
                        pixels[n].push_back(channel_value(n, y, x, c));
            images.push_back(ocr::image(pixels[n].data(), width, height, OCR_PIXEL_RGB8));
        }
        std::ofstream labels(argv[2], std::ios::binary);
        for (const ocr::LabelMap &map : segmenter.predict(images))
            for (uint32_t y = 0; y < map.height; y++)
                for (uint32_t x = 0; x < map.width; x++) {
                    uint16_t value = static_cast<uint16_t>(map.at(y, x));
                    labels.write(reinterpret_cast<const char *>(&value), sizeof value);
                }
        const char *paths[2] = {argv[3], argv[4]};
        const ocr_score_layout layouts[2] = {OCR_SCORES_HWC, OCR_SCORES_CHW};
        for (int i = 0; i < 2; i++) {
            std::ofstream scores(paths[i], std::ios::binary);
            for (const ocr::ScoreMap &map : segmenter.predict_scores(images, layouts[i]))
                scores.write(reinterpret_cast<const char *>(map.data.data()),
                             static_cast<std::streamsize>(map.data.size() * sizeof(float)));
        }
        try {
            segmenter.predict(std::vector<ocr_image>());
        } catch (const ocr::Error &error) {
            std::cout << "empty batch: " << ocr_status_name(error.status()) << ": "
                      << error.what() << "\n";
        }
        std::cout << "classes " << segmenter.info().num_classes << "\n";
    } catch (const ocr::Error &error) {
        std::cerr << "capi_test_cpp: " << ocr_status_name(error.status()) << ": " << error.what()
                  << "\n";
        return 1;
    } catch (const std::exception &error) {
        std::cerr << "capi_test_cpp: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
