// segment_cpp: segment several images in one batch with the C++ wrapper (ocr_deploy.hpp).
//
//   segment_cpp MODEL.onnx IMAGE.ppm...
//
// Reads binary PPM (P6) images of any sizes and prints, for each, the pixels of every class
// present. Errors arrive as ocr::Error exceptions carrying ocr_last_error()'s message.
#include <ocr_deploy.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Picture {
    uint32_t width = 0, height = 0;
    std::vector<unsigned char> rgb;
};

// A binary PPM (P6, maxval 255); throws std::runtime_error otherwise.
Picture read_ppm(const std::string &path)
{
    std::ifstream file(path, std::ios::binary);
    if (!file.is_open())
        throw std::runtime_error(path + ": expected an image file, found none; check the path");
    std::string magic;
    unsigned maxval = 0;
    Picture picture;
    file >> magic;
    for (uint32_t *field : {&picture.width, &picture.height, &maxval}) {
        while (file >> std::ws && file.peek() == '#')
            file.ignore(1 << 20, '\n');
        if (field == &maxval)
            file >> maxval;
        else
            file >> *field;
    }
    if (!file || magic != "P6" || maxval != 255 || picture.width == 0 || picture.height == 0)
        throw std::runtime_error(path + ": expected a binary PPM (P6) with maxval 255");
    file.get();
    picture.rgb.resize(static_cast<size_t>(picture.width) * picture.height * 3);
    if (!file.read(reinterpret_cast<char *>(picture.rgb.data()),
                   static_cast<std::streamsize>(picture.rgb.size())))
        throw std::runtime_error(path + ": truncated pixel data");
    return picture;
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL.onnx IMAGE.ppm...\n";
        return 2;
    }
    try {
        ocr::Segmenter segmenter(argv[1]);
        const ocr::ModelInfo &info = segmenter.info();
        std::vector<Picture> pictures;
        std::vector<ocr_image> images;
        for (int i = 2; i < argc; i++)
            pictures.push_back(read_ppm(argv[i]));
        for (const Picture &p : pictures)  // views of pixels this program owns
            images.push_back(ocr::image(p.rgb.data(), p.width, p.height, OCR_PIXEL_RGB8));
        std::vector<ocr::LabelMap> maps = segmenter.predict(images);
        for (size_t i = 0; i < maps.size(); i++) {
            std::map<uint32_t, size_t> counts;
            for (uint32_t y = 0; y < maps[i].height; y++)
                for (uint32_t x = 0; x < maps[i].width; x++)
                    counts[maps[i].at(y, x)]++;
            std::cout << argv[i + 2] << ": " << maps[i].width << "x" << maps[i].height;
            for (const auto &entry : counts)
                std::cout << "; " << info.class_names.at(entry.first) << " " << entry.second;
            std::cout << "\n";
        }
    } catch (const ocr::Error &error) {
        std::cerr << "segment_cpp: " << ocr_status_name(error.status()) << ": " << error.what()
                  << "\n";
        return 1;
    } catch (const std::exception &error) {
        std::cerr << "segment_cpp: " << error.what() << "\n";
        return 2;
    }
    return 0;
}
