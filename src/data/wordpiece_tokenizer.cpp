#include "dfar/data/wordpiece_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "dfar/core/error.h"

namespace dfar {
namespace {

using nlohmann::json;

struct CodeRange {
  char32_t first, last;
};
struct StripBlock {
  char32_t first;
  uint32_t size;
  const char32_t* out;  // size code points: out[i] is what first + i becomes.
};
struct CodeMap {
  char32_t cp;
  char32_t out[3];  // Unused entries are 0.
};
struct CaseRun {
  char32_t first, last;
  int32_t delta;
  uint32_t stride;
};

// BEGIN GENERATED UNICODE TABLES
// Made by tools/make_encoder_golden.py --unicode-tables, probing tokenizers 0.19.1
// one code point at a time. Do not edit by hand.
// clang-format off
// clean_text drops these (NUL, U+FFFD, and HF's Cc/Cf/Co but TAB, LF, CR).
constexpr CodeRange kCleanRemoved[] = {
    {0x0000, 0x0008}, {0x000B, 0x000C}, {0x000E, 0x001F}, {0x007F, 0x009F}, {0x00AD, 0x00AD}, {0x0600, 0x0605},
    {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F}, {0x180E, 0x180E}, {0x200B, 0x200F}, {0x202A, 0x202E},
    {0x2060, 0x2064}, {0x2066, 0x206F}, {0xE000, 0xF8FF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0xFFFD, 0xFFFD},
    {0x110BD, 0x110BD}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
    {0xF0000, 0xFFFFD}, {0x100000, 0x10FFFD},
};
// char::is_whitespace: split points of BertPreTokenizer; clean_text maps those it keeps to U+0020.
constexpr CodeRange kWhitespace[] = {
    {0x0009, 0x000D}, {0x0020, 0x0020}, {0x0085, 0x0085}, {0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
// handle_chinese_chars puts spaces around these (CJK ideograph blocks).
constexpr CodeRange kChinese[] = {
    {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B81F}, {0x2B920, 0x2CEAF},
    {0x2F800, 0x2FA1F},
};
// BertPreTokenizer isolates these (ASCII punctuation and HF's P* categories).
constexpr CodeRange kPunctuation[] = {
    {0x0021, 0x002F}, {0x003A, 0x0040}, {0x005B, 0x0060}, {0x007B, 0x007E}, {0x00A1, 0x00A1}, {0x00A7, 0x00A7},
    {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB}, {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387},
    {0x055A, 0x055F}, {0x0589, 0x058A}, {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6},
    {0x05F3, 0x05F4}, {0x0609, 0x060A}, {0x060C, 0x060D}, {0x061B, 0x061B}, {0x061E, 0x061F}, {0x066A, 0x066D},
    {0x06D4, 0x06D4}, {0x0700, 0x070D}, {0x07F7, 0x07F9}, {0x0830, 0x083E}, {0x085E, 0x085E}, {0x0964, 0x0965},
    {0x0970, 0x0970}, {0x0AF0, 0x0AF0}, {0x0DF4, 0x0DF4}, {0x0E4F, 0x0E4F}, {0x0E5A, 0x0E5B}, {0x0F04, 0x0F12},
    {0x0F14, 0x0F14}, {0x0F3A, 0x0F3D}, {0x0F85, 0x0F85}, {0x0FD0, 0x0FD4}, {0x0FD9, 0x0FDA}, {0x104A, 0x104F},
    {0x10FB, 0x10FB}, {0x1360, 0x1368}, {0x1400, 0x1400}, {0x166D, 0x166E}, {0x169B, 0x169C}, {0x16EB, 0x16ED},
    {0x1735, 0x1736}, {0x17D4, 0x17D6}, {0x17D8, 0x17DA}, {0x1800, 0x180A}, {0x1944, 0x1945}, {0x1A1E, 0x1A1F},
    {0x1AA0, 0x1AA6}, {0x1AA8, 0x1AAD}, {0x1B5A, 0x1B60}, {0x1BFC, 0x1BFF}, {0x1C3B, 0x1C3F}, {0x1C7E, 0x1C7F},
    {0x1CC0, 0x1CC7}, {0x1CD3, 0x1CD3}, {0x2010, 0x2027}, {0x2030, 0x2043}, {0x2045, 0x2051}, {0x2053, 0x205E},
    {0x207D, 0x207E}, {0x208D, 0x208E}, {0x2308, 0x230B}, {0x2329, 0x232A}, {0x2768, 0x2775}, {0x27C5, 0x27C6},
    {0x27E6, 0x27EF}, {0x2983, 0x2998}, {0x29D8, 0x29DB}, {0x29FC, 0x29FD}, {0x2CF9, 0x2CFC}, {0x2CFE, 0x2CFF},
    {0x2D70, 0x2D70}, {0x2E00, 0x2E2E}, {0x2E30, 0x2E42}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301F},
    {0x3030, 0x3030}, {0x303D, 0x303D}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0xA4FE, 0xA4FF}, {0xA60D, 0xA60F},
    {0xA673, 0xA673}, {0xA67E, 0xA67E}, {0xA6F2, 0xA6F7}, {0xA874, 0xA877}, {0xA8CE, 0xA8CF}, {0xA8F8, 0xA8FA},
    {0xA8FC, 0xA8FC}, {0xA92E, 0xA92F}, {0xA95F, 0xA95F}, {0xA9C1, 0xA9CD}, {0xA9DE, 0xA9DF}, {0xAA5C, 0xAA5F},
    {0xAADE, 0xAADF}, {0xAAF0, 0xAAF1}, {0xABEB, 0xABEB}, {0xFD3E, 0xFD3F}, {0xFE10, 0xFE19}, {0xFE30, 0xFE52},
    {0xFE54, 0xFE61}, {0xFE63, 0xFE63}, {0xFE68, 0xFE68}, {0xFE6A, 0xFE6B}, {0xFF01, 0xFF03}, {0xFF05, 0xFF0A},
    {0xFF0C, 0xFF0F}, {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20}, {0xFF3B, 0xFF3D}, {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B},
    {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65}, {0x10100, 0x10102}, {0x1039F, 0x1039F}, {0x103D0, 0x103D0},
    {0x1056F, 0x1056F}, {0x10857, 0x10857}, {0x1091F, 0x1091F}, {0x1093F, 0x1093F}, {0x10A50, 0x10A58},
    {0x10A7F, 0x10A7F}, {0x10AF0, 0x10AF6}, {0x10B39, 0x10B3F}, {0x10B99, 0x10B9C}, {0x11047, 0x1104D},
    {0x110BB, 0x110BC}, {0x110BE, 0x110C1}, {0x11140, 0x11143}, {0x11174, 0x11175}, {0x111C5, 0x111C9},
    {0x111CD, 0x111CD}, {0x111DB, 0x111DB}, {0x111DD, 0x111DF}, {0x11238, 0x1123D}, {0x112A9, 0x112A9},
    {0x114C6, 0x114C6}, {0x115C1, 0x115D7}, {0x11641, 0x11643}, {0x1173C, 0x1173E}, {0x12470, 0x12474},
    {0x16A6E, 0x16A6F}, {0x16AF5, 0x16AF5}, {0x16B37, 0x16B3B}, {0x16B44, 0x16B44}, {0x1BC9F, 0x1BC9F},
    {0x1DA87, 0x1DA8B},
};
// strip_accents drops these (general category Mn in HF's tables).
constexpr CodeRange kStripRemoved[] = {
    {0x0300, 0x036F}, {0x0483, 0x0487}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2}, {0x05C4, 0x05C5},
    {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4},
    {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711}, {0x0730, 0x074A}, {0x07A6, 0x07B0}, {0x07EB, 0x07F3},
    {0x0816, 0x0819}, {0x081B, 0x0823}, {0x0825, 0x0827}, {0x0829, 0x082D}, {0x0859, 0x085B}, {0x08E3, 0x0902},
    {0x093A, 0x093A}, {0x093C, 0x093C}, {0x0941, 0x0948}, {0x094D, 0x094D}, {0x0951, 0x0957}, {0x0962, 0x0963},
    {0x0981, 0x0981}, {0x09BC, 0x09BC}, {0x09C1, 0x09C4}, {0x09CD, 0x09CD}, {0x09E2, 0x09E3}, {0x0A01, 0x0A02},
    {0x0A3C, 0x0A3C}, {0x0A41, 0x0A42}, {0x0A47, 0x0A48}, {0x0A4B, 0x0A4D}, {0x0A51, 0x0A51}, {0x0A70, 0x0A71},
    {0x0A75, 0x0A75}, {0x0A81, 0x0A82}, {0x0ABC, 0x0ABC}, {0x0AC1, 0x0AC5}, {0x0AC7, 0x0AC8}, {0x0ACD, 0x0ACD},
    {0x0AE2, 0x0AE3}, {0x0B01, 0x0B01}, {0x0B3C, 0x0B3C}, {0x0B3F, 0x0B3F}, {0x0B41, 0x0B44}, {0x0B4D, 0x0B4D},
    {0x0B56, 0x0B56}, {0x0B62, 0x0B63}, {0x0B82, 0x0B82}, {0x0BC0, 0x0BC0}, {0x0BCD, 0x0BCD}, {0x0C00, 0x0C00},
    {0x0C3E, 0x0C40}, {0x0C46, 0x0C48}, {0x0C4A, 0x0C4D}, {0x0C55, 0x0C56}, {0x0C62, 0x0C63}, {0x0C81, 0x0C81},
    {0x0CBC, 0x0CBC}, {0x0CBF, 0x0CBF}, {0x0CC6, 0x0CC6}, {0x0CCC, 0x0CCD}, {0x0CE2, 0x0CE3}, {0x0D01, 0x0D01},
    {0x0D41, 0x0D44}, {0x0D4D, 0x0D4D}, {0x0D62, 0x0D63}, {0x0DCA, 0x0DCA}, {0x0DD2, 0x0DD4}, {0x0DD6, 0x0DD6},
    {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x0EB1, 0x0EB1}, {0x0EB4, 0x0EB9}, {0x0EBB, 0x0EBC},
    {0x0EC8, 0x0ECD}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35}, {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F7E},
    {0x0F80, 0x0F84}, {0x0F86, 0x0F87}, {0x0F8D, 0x0F97}, {0x0F99, 0x0FBC}, {0x0FC6, 0x0FC6}, {0x102D, 0x1030},
    {0x1032, 0x1037}, {0x1039, 0x103A}, {0x103D, 0x103E}, {0x1058, 0x1059}, {0x105E, 0x1060}, {0x1071, 0x1074},
    {0x1082, 0x1082}, {0x1085, 0x1086}, {0x108D, 0x108D}, {0x109D, 0x109D}, {0x135D, 0x135F}, {0x1712, 0x1714},
    {0x1732, 0x1734}, {0x1752, 0x1753}, {0x1772, 0x1773}, {0x17B4, 0x17B5}, {0x17B7, 0x17BD}, {0x17C6, 0x17C6},
    {0x17C9, 0x17D3}, {0x17DD, 0x17DD}, {0x180B, 0x180D}, {0x18A9, 0x18A9}, {0x1920, 0x1922}, {0x1927, 0x1928},
    {0x1932, 0x1932}, {0x1939, 0x193B}, {0x1A17, 0x1A18}, {0x1A1B, 0x1A1B}, {0x1A56, 0x1A56}, {0x1A58, 0x1A5E},
    {0x1A60, 0x1A60}, {0x1A62, 0x1A62}, {0x1A65, 0x1A6C}, {0x1A73, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AB0, 0x1ABD},
    {0x1B00, 0x1B03}, {0x1B34, 0x1B34}, {0x1B36, 0x1B3A}, {0x1B3C, 0x1B3C}, {0x1B42, 0x1B42}, {0x1B6B, 0x1B73},
    {0x1B80, 0x1B81}, {0x1BA2, 0x1BA5}, {0x1BA8, 0x1BA9}, {0x1BAB, 0x1BAD}, {0x1BE6, 0x1BE6}, {0x1BE8, 0x1BE9},
    {0x1BED, 0x1BED}, {0x1BEF, 0x1BF1}, {0x1C2C, 0x1C33}, {0x1C36, 0x1C37}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CE0},
    {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9}, {0x1DC0, 0x1DF5}, {0x1DFC, 0x1DFF},
    {0x20D0, 0x20DC}, {0x20E1, 0x20E1}, {0x20E5, 0x20F0}, {0x2CEF, 0x2CF1}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF},
    {0x302A, 0x302D}, {0x3099, 0x309A}, {0xA66F, 0xA66F}, {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1},
    {0xA802, 0xA802}, {0xA806, 0xA806}, {0xA80B, 0xA80B}, {0xA825, 0xA826}, {0xA8C4, 0xA8C4}, {0xA8E0, 0xA8F1},
    {0xA926, 0xA92D}, {0xA947, 0xA951}, {0xA980, 0xA982}, {0xA9B3, 0xA9B3}, {0xA9B6, 0xA9B9}, {0xA9BC, 0xA9BC},
    {0xA9E5, 0xA9E5}, {0xAA29, 0xAA2E}, {0xAA31, 0xAA32}, {0xAA35, 0xAA36}, {0xAA43, 0xAA43}, {0xAA4C, 0xAA4C},
    {0xAA7C, 0xAA7C}, {0xAAB0, 0xAAB0}, {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1},
    {0xAAEC, 0xAAED}, {0xAAF6, 0xAAF6}, {0xABE5, 0xABE5}, {0xABE8, 0xABE8}, {0xABED, 0xABED}, {0xFB1E, 0xFB1E},
    {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0x101FD, 0x101FD}, {0x102E0, 0x102E0}, {0x10376, 0x1037A},
    {0x10A01, 0x10A03}, {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F}, {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F},
    {0x10AE5, 0x10AE6}, {0x11001, 0x11001}, {0x11038, 0x11046}, {0x1107F, 0x11081}, {0x110B3, 0x110B6},
    {0x110B9, 0x110BA}, {0x11100, 0x11102}, {0x11127, 0x1112B}, {0x1112D, 0x11134}, {0x11173, 0x11173},
    {0x11180, 0x11181}, {0x111B6, 0x111BE}, {0x111CA, 0x111CC}, {0x1122F, 0x11231}, {0x11234, 0x11234},
    {0x11236, 0x11237}, {0x112DF, 0x112DF}, {0x112E3, 0x112EA}, {0x11300, 0x11301}, {0x1133C, 0x1133C},
    {0x11340, 0x11340}, {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x114B3, 0x114B8}, {0x114BA, 0x114BA},
    {0x114BF, 0x114C0}, {0x114C2, 0x114C3}, {0x115B2, 0x115B5}, {0x115BC, 0x115BD}, {0x115BF, 0x115C0},
    {0x115DC, 0x115DD}, {0x11633, 0x1163A}, {0x1163D, 0x1163D}, {0x1163F, 0x11640}, {0x116AB, 0x116AB},
    {0x116AD, 0x116AD}, {0x116B0, 0x116B5}, {0x116B7, 0x116B7}, {0x1171D, 0x1171F}, {0x11722, 0x11725},
    {0x11727, 0x1172B}, {0x16AF0, 0x16AF4}, {0x16B30, 0x16B36}, {0x16F8F, 0x16F92}, {0x1BC9D, 0x1BC9E},
    {0x1D167, 0x1D169}, {0x1D17B, 0x1D182}, {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244},
    {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75}, {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F},
    {0x1DAA1, 0x1DAAF}, {0x1E8D0, 0x1E8D6}, {0xE0100, 0xE01EF},
};
// strip_accents maps U+<first> + i to the i-th code point of <out> (NFD with Mn dropped).
constexpr StripBlock kStripBlocks[] = {
    {0x00C0, 127, U"AAAAAAÆCEEEEIIIIÐNOOOOO×ØUUUUYÞßaaaaaaæceeeeiiii"
                    U"ðnooooo÷øuuuuyþyAaAaAaCcCcCcCcDdĐđEeEeEeEeEeGgGg"
                    U"GgGgHhĦħIiIiIiIiIıĲĳJjKkĸLlLlLl"},
    {0x0143, 60, U"NnNnNnŉŊŋOoOoOoŒœRrRrRrSsSsSsSsTtTtŦŧUuUuUuUuUuU"
                    U"uWwYyYZzZzZz"},
    {0x01CD, 83, U"AaIiOoUuUuUuUuUuǝAaAaÆæǤǥGgKkOoOoƷʒjǱǲǳGgǶǷNnAaÆ"
                    U"æØøAaAaEeEeIiIiOoOoRrRrUuUuSsTtȜȝHh"},
    {0x0226, 14, U"AaEeOoOoOoOoYy"},
    {0x04D0, 42, U"АаАаӔӕЕеӘәӘәЖжЗзӠӡИиИиОоӨөӨөЭэУуУуУуЧчӶӷЫы"},
    {0x0958, 8, U"कखगजडढफय"},
    {0x1E00, 156, U"AaBbBbBbCcDdDdDdDdDdEeEeEeEeEeFfGgHhHhHhHhHhIiIi"
                    U"KkKkKkLlLlLlLlMmMmMmNnNnNnNnOoOoOoOoPpPpRrRrRrRr"
                    U"SsSsSsSsSsTtTtTtTtUuUuUuUuUuVvVvWwWwWwWwWwXxXxYy"
                    U"ZzZzZzhtwyẚſ"},
    {0x1EA0, 90, U"AaAaAaAaAaAaAaAaAaAaAaAaEeEeEeEeEeEeEeEeIiIiOoOo"
                    U"OoOoOoOoOoOoOoOoOoOoUuUuUuUuUuUuUuYyYyYyYy"},
    {0x1F00, 22, U"ααααααααΑΑΑΑΑΑΑΑεεεεεε"},
    {0x1F20, 38, U"ηηηηηηηηΗΗΗΗΗΗΗΗιιιιιιιιΙΙΙΙΙΙΙΙοοοοοο"},
    {0x1F50, 8, U"υυυυυυυυ"},
    {0x1F5F, 31, U"ΥωωωωωωωωΩΩΩΩΩΩΩΩααεεηηιιοουυωω"},
    {0x1F80, 53, U"ααααααααΑΑΑΑΑΑΑΑηηηηηηηηΗΗΗΗΗΗΗΗωωωωωωωωΩΩΩΩΩΩΩΩ"
                    U"ααααα"},
    {0x1FB6, 15, U"ααΑΑΑΑΑ᾽ι᾿῀¨ηηη"},
    {0x1FC6, 14, U"ηηΕΕΗΗΗ᾿᾿᾿ιιιι"},
    {0x1FDD, 19, U"῾῾῾υυυυρρυυΥΥΥΥΡ¨¨`"},
    {0x1FF6, 8, U"ωωΟΟΩΩΩ´"},
    {0x226D, 13, U"≍<>≤≥≲≳≲≳≶≷≶≷"},
    {0x304C, 30, U"かききくくけけここささししすすせせそそたたちちっつつててとと"},
    {0x3070, 14, U"ははひひひふふふへへへほほほ"},
    {0x30AC, 30, U"カキキククケケココササシシススセセソソタタチチッツツテテトト"},
    {0x30D0, 14, U"ハハヒヒヒフフフヘヘヘホホホ"},
    {0xF900, 366, U"豈更車賈滑串句龜龜契金喇奈懶癩羅蘿螺裸邏樂洛烙珞落酪駱亂卵欄爛蘭鸞嵐濫藍襤拉臘蠟廊朗浪狼郎來冷勞"
                    U"擄櫓爐盧老蘆虜路露魯鷺碌祿綠菉錄鹿論壟弄籠聾牢磊賂雷壘屢樓淚漏累縷陋勒肋凜凌稜綾菱陵讀拏樂諾丹寧"
                    U"怒率異北磻便復不泌數索參塞省葉說殺辰沈拾若掠略亮兩凉梁糧良諒量勵呂女廬旅濾礪閭驪麗黎力曆歷轢年憐"
                    U"戀撚漣煉璉秊練聯輦蓮連鍊列劣咽烈裂說廉念捻殮簾獵令囹寧嶺怜玲瑩羚聆鈴零靈領例禮醴隸惡了僚寮尿料樂"
                    U"燎療蓼遼龍暈阮劉杻柳流溜琉留硫紐類六戮陸倫崙淪輪律慄栗率隆利吏履易李梨泥理痢罹裏裡里離匿溺吝燐璘"
                    U"藺隣鱗麟林淋臨立笠粒狀炙識什茶刺切度拓糖宅洞暴輻行降見廓兀嗀﨎﨏塚﨑晴﨓﨔凞猪益礼神祥福靖精羽﨟"
                    U"蘒﨡諸﨣﨤逸都﨧﨨﨩飯飼館鶴郞隷侮僧免勉勤卑喝嘆器塀墨層屮悔慨憎懲敏既暑梅海渚漢煮爫琢碑社祉祈祐"
                    U"祖祝禍禎穀突節練縉繁署者臭艹艹著褐視謁謹賓贈辶逸難響頻恵𤋮舘"},
    {0xFA70, 106, U"並况全侀充冀勇勺喝啕喙嗢塚墳奄奔婢嬨廒廙彩徭惘慎愈憎慠懲戴揄搜摒敖晴朗望杖歹殺流滛滋漢瀞煮瞧爵犯"
                    U"猪瑱甆画瘝瘟益盛直睊着磌窱節类絛練缾者荒華蝹襁覆視調諸請謁諾諭謹變贈輸遲醙鉶陼難靖韛響頋頻鬒龜𢡊"
                    U"𢡄𣏕㮝䀘䀹𥉉𥳐𧻓齃龎"},
    {0x2F800, 542, U"丽丸乁𠄢你侮侻倂偺備僧像㒞𠘺免兔兤具𠔜㒹內再𠕋冗冤仌冬况𩇟凵刃㓟刻剆割剷㔕勇勉勤勺包匆北卉卑博即"
                    U"卽卿卿卿𠨬灰及叟𠭣叫叱吆咞吸呈周咢哶唐啓啣善善喙喫喳嗂圖嘆圗噑噴切壮城埴堍型堲報墬𡓤売壷夆多夢奢"
                    U"𡚨𡛪姬娛娧姘婦㛮㛼嬈嬾嬾𡧈寃寘寧寳𡬘寿将当尢㞁屠屮峀岍𡷤嵃𡷦嵮嵫嵼巡巢㠯巽帨帽幩㡢𢆃㡼庰庳庶廊𪎒"
                    U"廾𢌱𢌱舁弢弢㣇𣊸𦇚形彫㣣徚忍志忹悁㤺㤜悔𢛔惇慈慌慎慌慺憎憲憤憯懞懲懶成戛扝抱拔捐𢬌挽拼捨掃揤𢯱搢"
                    U"揅掩㨮摩摾撝摷㩬敏敬𣀊旣書晉㬙暑㬈㫤冒冕最暜肭䏙朗望朡杞杓𣏃㭉柺枅桒梅𣑭梎栟椔㮝楂榣槪檨𣚣櫛㰘次"
                    U"𣢧歔㱎歲殟殺殻𣪍𡴋𣫺汎𣲼沿泍汧洖派海流浩浸涅𣴞洴港湮㴳滋滇𣻑淹潮𣽞𣾎濆瀹瀞瀛㶖灊災灷炭𠔥煅𤉣熜𤎫"
                    U"爨爵牐𤘈犀犕𤜵𤠔獺王㺬玥㺸㺸瑇瑜瑱璅瓊㼛甤𤰶甾𤲒異𢆟瘐𤾡𤾸𥁄㿼䀈直𥃳𥃲𥄙𥄳眞真真睊䀹瞋䁆䂖𥐝硎碌"
                    U"磌䃣𥘦祖𥚚𥛅福秫䄯穀穊穏𥥼𥪧𥪧竮䈂𥮫篆築䈧𥲀糒䊠糨糣紀𥾆絣䌁緇縂繅䌴𦈨𦉇䍙𦋙罺𦌾羕翺者𦓚𦔣聠𦖨聰"
                    U"𣍟䏕育脃䐋脾媵𦞧𦞵𣎓𣎜舁舄辞䑫芑芋芝劳花芳芽苦𦬼若茝荣莭茣莽菧著荓菊菌菜𦰶𦵫𦳕䔫蓱蓳蔖𧏊蕤𦼬䕝䕡"
                    U"𦾱𧃒䕫虐虜虧虩蚩蚈蜎蛢蝹蜨蝫螆䗗蟡蠁䗹衠衣𧙧裗裞䘵裺㒻𧢮𧥦䚾䛇誠諭變豕𧲨貫賁贛起𧼯𠠄跋趼跰𠣞軔輸"
                    U"𨗒𨗭邔郱鄑𨜮鄛鈸鋗鋘鉼鏹鐕𨯺開䦕閷𨵷䧦雃嶲霣𩅅𩈚䩮䩶韠𩐊䪲𩒖頋頋頩𩖶飢䬳餩馧駂駾䯎𩬰鬒鱀鳽䳎䳭鵧"
                    U"𪃎䳸𪄅𪈎𪊑麻䵖黹黾鼅鼏鼖鼻𪘀"},
};
// strip_accents maps these outside the blocks (Hangul syllables are decomposed in code).
constexpr CodeMap kStripPairs[] = {
    {0x01A0, {0x004F}}, {0x01A1, {0x006F}}, {0x01AF, {0x0055}}, {0x01B0, {0x0075}}, {0x0374, {0x02B9}},
    {0x037E, {0x003B}}, {0x0385, {0x00A8}}, {0x0386, {0x0391}}, {0x0387, {0x00B7}}, {0x0388, {0x0395}},
    {0x0389, {0x0397}}, {0x038A, {0x0399}}, {0x038C, {0x039F}}, {0x038E, {0x03A5}}, {0x038F, {0x03A9}},
    {0x0390, {0x03B9}}, {0x03AA, {0x0399}}, {0x03AB, {0x03A5}}, {0x03AC, {0x03B1}}, {0x03AD, {0x03B5}},
    {0x03AE, {0x03B7}}, {0x03AF, {0x03B9}}, {0x03B0, {0x03C5}}, {0x03CA, {0x03B9}}, {0x03CB, {0x03C5}},
    {0x03CC, {0x03BF}}, {0x03CD, {0x03C5}}, {0x03CE, {0x03C9}}, {0x03D3, {0x03D2}}, {0x03D4, {0x03D2}},
    {0x0400, {0x0415}}, {0x0401, {0x0415}}, {0x0403, {0x0413}}, {0x0407, {0x0406}}, {0x040C, {0x041A}},
    {0x040D, {0x0418}}, {0x040E, {0x0423}}, {0x0419, {0x0418}}, {0x0439, {0x0438}}, {0x0450, {0x0435}},
    {0x0451, {0x0435}}, {0x0453, {0x0433}}, {0x0457, {0x0456}}, {0x045C, {0x043A}}, {0x045D, {0x0438}},
    {0x045E, {0x0443}}, {0x0476, {0x0474}}, {0x0477, {0x0475}}, {0x04C1, {0x0416}}, {0x04C2, {0x0436}},
    {0x0622, {0x0627}}, {0x0623, {0x0627}}, {0x0624, {0x0648}}, {0x0625, {0x0627}}, {0x0626, {0x064A}},
    {0x06C0, {0x06D5}}, {0x06C2, {0x06C1}}, {0x06D3, {0x06D2}}, {0x0929, {0x0928}}, {0x0931, {0x0930}},
    {0x0934, {0x0933}}, {0x09CB, {0x09C7, 0x09BE}}, {0x09CC, {0x09C7, 0x09D7}}, {0x09DC, {0x09A1}},
    {0x09DD, {0x09A2}}, {0x09DF, {0x09AF}}, {0x0A33, {0x0A32}}, {0x0A36, {0x0A38}}, {0x0A59, {0x0A16}},
    {0x0A5A, {0x0A17}}, {0x0A5B, {0x0A1C}}, {0x0A5E, {0x0A2B}}, {0x0B48, {0x0B47}}, {0x0B4B, {0x0B47, 0x0B3E}},
    {0x0B4C, {0x0B47, 0x0B57}}, {0x0B5C, {0x0B21}}, {0x0B5D, {0x0B22}}, {0x0B94, {0x0B92, 0x0BD7}},
    {0x0BCA, {0x0BC6, 0x0BBE}}, {0x0BCB, {0x0BC7, 0x0BBE}}, {0x0BCC, {0x0BC6, 0x0BD7}}, {0x0CC0, {0x0CD5}},
    {0x0CC7, {0x0CD5}}, {0x0CC8, {0x0CD6}}, {0x0CCA, {0x0CC2}}, {0x0CCB, {0x0CC2, 0x0CD5}},
    {0x0D4A, {0x0D46, 0x0D3E}}, {0x0D4B, {0x0D47, 0x0D3E}}, {0x0D4C, {0x0D46, 0x0D57}}, {0x0DDA, {0x0DD9}},
    {0x0DDC, {0x0DD9, 0x0DCF}}, {0x0DDD, {0x0DD9, 0x0DCF}}, {0x0DDE, {0x0DD9, 0x0DDF}}, {0x0F43, {0x0F42}},
    {0x0F4D, {0x0F4C}}, {0x0F52, {0x0F51}}, {0x0F57, {0x0F56}}, {0x0F5C, {0x0F5B}}, {0x0F69, {0x0F40}},
    {0x1026, {0x1025}}, {0x1B06, {0x1B05, 0x1B35}}, {0x1B08, {0x1B07, 0x1B35}}, {0x1B0A, {0x1B09, 0x1B35}},
    {0x1B0C, {0x1B0B, 0x1B35}}, {0x1B0E, {0x1B0D, 0x1B35}}, {0x1B12, {0x1B11, 0x1B35}}, {0x1B3B, {0x1B35}},
    {0x1B3D, {0x1B35}}, {0x1B40, {0x1B3E, 0x1B35}}, {0x1B41, {0x1B3F, 0x1B35}}, {0x1B43, {0x1B35}},
    {0x1F18, {0x0395}}, {0x1F19, {0x0395}}, {0x1F1A, {0x0395}}, {0x1F1B, {0x0395}}, {0x1F1C, {0x0395}},
    {0x1F1D, {0x0395}}, {0x1F48, {0x039F}}, {0x1F49, {0x039F}}, {0x1F4A, {0x039F}}, {0x1F4B, {0x039F}},
    {0x1F4C, {0x039F}}, {0x1F4D, {0x039F}}, {0x1F59, {0x03A5}}, {0x1F5B, {0x03A5}}, {0x1F5D, {0x03A5}},
    {0x1FD6, {0x03B9}}, {0x1FD7, {0x03B9}}, {0x1FD8, {0x0399}}, {0x1FD9, {0x0399}}, {0x1FDA, {0x0399}},
    {0x1FDB, {0x0399}}, {0x1FF2, {0x03C9}}, {0x1FF3, {0x03C9}}, {0x1FF4, {0x03C9}}, {0x2000, {0x2002}},
    {0x2001, {0x2003}}, {0x2126, {0x03A9}}, {0x212A, {0x004B}}, {0x212B, {0x0041}}, {0x219A, {0x2190}},
    {0x219B, {0x2192}}, {0x21AE, {0x2194}}, {0x21CD, {0x21D0}}, {0x21CE, {0x21D4}}, {0x21CF, {0x21D2}},
    {0x2204, {0x2203}}, {0x2209, {0x2208}}, {0x220C, {0x220B}}, {0x2224, {0x2223}}, {0x2226, {0x2225}},
    {0x2241, {0x223C}}, {0x2244, {0x2243}}, {0x2247, {0x2245}}, {0x2249, {0x2248}}, {0x2260, {0x003D}},
    {0x2262, {0x2261}}, {0x2280, {0x227A}}, {0x2281, {0x227B}}, {0x2284, {0x2282}}, {0x2285, {0x2283}},
    {0x2288, {0x2286}}, {0x2289, {0x2287}}, {0x22AC, {0x22A2}}, {0x22AD, {0x22A8}}, {0x22AE, {0x22A9}},
    {0x22AF, {0x22AB}}, {0x22E0, {0x227C}}, {0x22E1, {0x227D}}, {0x22E2, {0x2291}}, {0x22E3, {0x2292}},
    {0x22EA, {0x22B2}}, {0x22EB, {0x22B3}}, {0x22EC, {0x22B4}}, {0x22ED, {0x22B5}}, {0x2329, {0x3008}},
    {0x232A, {0x3009}}, {0x2ADC, {0x2ADD}}, {0x3094, {0x3046}}, {0x309E, {0x309D}}, {0x30F4, {0x30A6}},
    {0x30F7, {0x30EF}}, {0x30F8, {0x30F0}}, {0x30F9, {0x30F1}}, {0x30FA, {0x30F2}}, {0x30FE, {0x30FD}},
    {0xFB1D, {0x05D9}}, {0xFB1F, {0x05F2}}, {0xFB2A, {0x05E9}}, {0xFB2B, {0x05E9}}, {0xFB2C, {0x05E9}},
    {0xFB2D, {0x05E9}}, {0xFB2E, {0x05D0}}, {0xFB2F, {0x05D0}}, {0xFB30, {0x05D0}}, {0xFB31, {0x05D1}},
    {0xFB32, {0x05D2}}, {0xFB33, {0x05D3}}, {0xFB34, {0x05D4}}, {0xFB35, {0x05D5}}, {0xFB36, {0x05D6}},
    {0xFB38, {0x05D8}}, {0xFB39, {0x05D9}}, {0xFB3A, {0x05DA}}, {0xFB3B, {0x05DB}}, {0xFB3C, {0x05DC}},
    {0xFB3E, {0x05DE}}, {0xFB40, {0x05E0}}, {0xFB41, {0x05E1}}, {0xFB43, {0x05E3}}, {0xFB44, {0x05E4}},
    {0xFB46, {0x05E6}}, {0xFB47, {0x05E7}}, {0xFB48, {0x05E8}}, {0xFB49, {0x05E9}}, {0xFB4A, {0x05EA}},
    {0xFB4B, {0x05D5}}, {0xFB4C, {0x05D1}}, {0xFB4D, {0x05DB}}, {0xFB4E, {0x05E4}}, {0x1109A, {0x11099}},
    {0x1109C, {0x1109B}}, {0x110AB, {0x110A5}}, {0x1134B, {0x11347, 0x1133E}}, {0x1134C, {0x11347, 0x11357}},
    {0x114BB, {0x114B9}}, {0x114BC, {0x114B9, 0x114B0}}, {0x114BE, {0x114B9, 0x114BD}}, {0x115BA, {0x115B8, 0x115AF}},
    {0x115BB, {0x115B9, 0x115AF}}, {0x1D15E, {0x1D157, 0x1D165}}, {0x1D15F, {0x1D158, 0x1D165}},
    {0x1D160, {0x1D158, 0x1D165, 0x1D16E}}, {0x1D161, {0x1D158, 0x1D165, 0x1D16F}},
    {0x1D162, {0x1D158, 0x1D165, 0x1D170}}, {0x1D163, {0x1D158, 0x1D165, 0x1D171}},
    {0x1D164, {0x1D158, 0x1D165, 0x1D172}}, {0x1D1BB, {0x1D1B9, 0x1D165}}, {0x1D1BC, {0x1D1BA, 0x1D165}},
    {0x1D1BD, {0x1D1B9, 0x1D165, 0x1D16E}}, {0x1D1BE, {0x1D1BA, 0x1D165, 0x1D16E}},
    {0x1D1BF, {0x1D1B9, 0x1D165, 0x1D16F}}, {0x1D1C0, {0x1D1BA, 0x1D165, 0x1D16F}},
};
// lowercase maps first..last (every stride-th) to cp + delta.
constexpr CaseRun kLowerRuns[] = {
    {0x0041, 0x005A, 32, 1}, {0x00C0, 0x00D6, 32, 1}, {0x00D8, 0x00DE, 32, 1}, {0x0100, 0x012E, 1, 2},
    {0x0132, 0x0136, 1, 2}, {0x0139, 0x0147, 1, 2}, {0x014A, 0x0176, 1, 2}, {0x0178, 0x0178, -121, 1},
    {0x0179, 0x017D, 1, 2}, {0x0181, 0x0181, 210, 1}, {0x0182, 0x0184, 1, 2}, {0x0186, 0x0186, 206, 1},
    {0x0187, 0x0187, 1, 1}, {0x0189, 0x018A, 205, 1}, {0x018B, 0x018B, 1, 1}, {0x018E, 0x018E, 79, 1},
    {0x018F, 0x018F, 202, 1}, {0x0190, 0x0190, 203, 1}, {0x0191, 0x0191, 1, 1}, {0x0193, 0x0193, 205, 1},
    {0x0194, 0x0194, 207, 1}, {0x0196, 0x0196, 211, 1}, {0x0197, 0x0197, 209, 1}, {0x0198, 0x0198, 1, 1},
    {0x019C, 0x019C, 211, 1}, {0x019D, 0x019D, 213, 1}, {0x019F, 0x019F, 214, 1}, {0x01A0, 0x01A4, 1, 2},
    {0x01A6, 0x01A6, 218, 1}, {0x01A7, 0x01A7, 1, 1}, {0x01A9, 0x01A9, 218, 1}, {0x01AC, 0x01AC, 1, 1},
    {0x01AE, 0x01AE, 218, 1}, {0x01AF, 0x01AF, 1, 1}, {0x01B1, 0x01B2, 217, 1}, {0x01B3, 0x01B5, 1, 2},
    {0x01B7, 0x01B7, 219, 1}, {0x01B8, 0x01B8, 1, 1}, {0x01BC, 0x01BC, 1, 1}, {0x01C4, 0x01C4, 2, 1},
    {0x01C5, 0x01C5, 1, 1}, {0x01C7, 0x01C7, 2, 1}, {0x01C8, 0x01C8, 1, 1}, {0x01CA, 0x01CA, 2, 1},
    {0x01CB, 0x01DB, 1, 2}, {0x01DE, 0x01EE, 1, 2}, {0x01F1, 0x01F1, 2, 1}, {0x01F2, 0x01F4, 1, 2},
    {0x01F6, 0x01F6, -97, 1}, {0x01F7, 0x01F7, -56, 1}, {0x01F8, 0x021E, 1, 2}, {0x0220, 0x0220, -130, 1},
    {0x0222, 0x0232, 1, 2}, {0x023A, 0x023A, 10795, 1}, {0x023B, 0x023B, 1, 1}, {0x023D, 0x023D, -163, 1},
    {0x023E, 0x023E, 10792, 1}, {0x0241, 0x0241, 1, 1}, {0x0243, 0x0243, -195, 1}, {0x0244, 0x0244, 69, 1},
    {0x0245, 0x0245, 71, 1}, {0x0246, 0x024E, 1, 2}, {0x0370, 0x0372, 1, 2}, {0x0376, 0x0376, 1, 1},
    {0x037F, 0x037F, 116, 1}, {0x0386, 0x0386, 38, 1}, {0x0388, 0x038A, 37, 1}, {0x038C, 0x038C, 64, 1},
    {0x038E, 0x038F, 63, 1}, {0x0391, 0x03A1, 32, 1}, {0x03A3, 0x03AB, 32, 1}, {0x03CF, 0x03CF, 8, 1},
    {0x03D8, 0x03EE, 1, 2}, {0x03F4, 0x03F4, -60, 1}, {0x03F7, 0x03F7, 1, 1}, {0x03F9, 0x03F9, -7, 1},
    {0x03FA, 0x03FA, 1, 1}, {0x03FD, 0x03FF, -130, 1}, {0x0400, 0x040F, 80, 1}, {0x0410, 0x042F, 32, 1},
    {0x0460, 0x0480, 1, 2}, {0x048A, 0x04BE, 1, 2}, {0x04C0, 0x04C0, 15, 1}, {0x04C1, 0x04CD, 1, 2},
    {0x04D0, 0x052E, 1, 2}, {0x0531, 0x0556, 48, 1}, {0x10A0, 0x10C5, 7264, 1}, {0x10C7, 0x10C7, 7264, 1},
    {0x10CD, 0x10CD, 7264, 1}, {0x13A0, 0x13EF, 38864, 1}, {0x13F0, 0x13F5, 8, 1}, {0x1C90, 0x1CBA, -3008, 1},
    {0x1CBD, 0x1CBF, -3008, 1}, {0x1E00, 0x1E94, 1, 2}, {0x1E9E, 0x1E9E, -7615, 1}, {0x1EA0, 0x1EFE, 1, 2},
    {0x1F08, 0x1F0F, -8, 1}, {0x1F18, 0x1F1D, -8, 1}, {0x1F28, 0x1F2F, -8, 1}, {0x1F38, 0x1F3F, -8, 1},
    {0x1F48, 0x1F4D, -8, 1}, {0x1F59, 0x1F5F, -8, 2}, {0x1F68, 0x1F6F, -8, 1}, {0x1F88, 0x1F8F, -8, 1},
    {0x1F98, 0x1F9F, -8, 1}, {0x1FA8, 0x1FAF, -8, 1}, {0x1FB8, 0x1FB9, -8, 1}, {0x1FBA, 0x1FBB, -74, 1},
    {0x1FBC, 0x1FBC, -9, 1}, {0x1FC8, 0x1FCB, -86, 1}, {0x1FCC, 0x1FCC, -9, 1}, {0x1FD8, 0x1FD9, -8, 1},
    {0x1FDA, 0x1FDB, -100, 1}, {0x1FE8, 0x1FE9, -8, 1}, {0x1FEA, 0x1FEB, -112, 1}, {0x1FEC, 0x1FEC, -7, 1},
    {0x1FF8, 0x1FF9, -128, 1}, {0x1FFA, 0x1FFB, -126, 1}, {0x1FFC, 0x1FFC, -9, 1}, {0x2126, 0x2126, -7517, 1},
    {0x212A, 0x212A, -8383, 1}, {0x212B, 0x212B, -8262, 1}, {0x2132, 0x2132, 28, 1}, {0x2160, 0x216F, 16, 1},
    {0x2183, 0x2183, 1, 1}, {0x24B6, 0x24CF, 26, 1}, {0x2C00, 0x2C2F, 48, 1}, {0x2C60, 0x2C60, 1, 1},
    {0x2C62, 0x2C62, -10743, 1}, {0x2C63, 0x2C63, -3814, 1}, {0x2C64, 0x2C64, -10727, 1}, {0x2C67, 0x2C6B, 1, 2},
    {0x2C6D, 0x2C6D, -10780, 1}, {0x2C6E, 0x2C6E, -10749, 1}, {0x2C6F, 0x2C6F, -10783, 1},
    {0x2C70, 0x2C70, -10782, 1}, {0x2C72, 0x2C72, 1, 1}, {0x2C75, 0x2C75, 1, 1}, {0x2C7E, 0x2C7F, -10815, 1},
    {0x2C80, 0x2CE2, 1, 2}, {0x2CEB, 0x2CED, 1, 2}, {0x2CF2, 0x2CF2, 1, 1}, {0xA640, 0xA66C, 1, 2},
    {0xA680, 0xA69A, 1, 2}, {0xA722, 0xA72E, 1, 2}, {0xA732, 0xA76E, 1, 2}, {0xA779, 0xA77B, 1, 2},
    {0xA77D, 0xA77D, -35332, 1}, {0xA77E, 0xA786, 1, 2}, {0xA78B, 0xA78B, 1, 1}, {0xA78D, 0xA78D, -42280, 1},
    {0xA790, 0xA792, 1, 2}, {0xA796, 0xA7A8, 1, 2}, {0xA7AA, 0xA7AA, -42308, 1}, {0xA7AB, 0xA7AB, -42319, 1},
    {0xA7AC, 0xA7AC, -42315, 1}, {0xA7AD, 0xA7AD, -42305, 1}, {0xA7AE, 0xA7AE, -42308, 1},
    {0xA7B0, 0xA7B0, -42258, 1}, {0xA7B1, 0xA7B1, -42282, 1}, {0xA7B2, 0xA7B2, -42261, 1}, {0xA7B3, 0xA7B3, 928, 1},
    {0xA7B4, 0xA7C2, 1, 2}, {0xA7C4, 0xA7C4, -48, 1}, {0xA7C5, 0xA7C5, -42307, 1}, {0xA7C6, 0xA7C6, -35384, 1},
    {0xA7C7, 0xA7C9, 1, 2}, {0xA7D0, 0xA7D0, 1, 1}, {0xA7D6, 0xA7D8, 1, 2}, {0xA7F5, 0xA7F5, 1, 1},
    {0xFF21, 0xFF3A, 32, 1}, {0x10400, 0x10427, 40, 1}, {0x104B0, 0x104D3, 40, 1}, {0x10570, 0x1057A, 39, 1},
    {0x1057C, 0x1058A, 39, 1}, {0x1058C, 0x10592, 39, 1}, {0x10594, 0x10595, 39, 1}, {0x10C80, 0x10CB2, 64, 1},
    {0x118A0, 0x118BF, 32, 1}, {0x16E40, 0x16E5F, 32, 1}, {0x1E900, 0x1E921, 34, 1},
};
// lowercase maps these to more than one code point.
constexpr CodeMap kLowerMulti[] = {
    {0x0130, {0x0069, 0x0307}},
};
// clang-format on
// END GENERATED UNICODE TABLES

constexpr char32_t kReplacement = 0xFFFD;
constexpr char32_t kHangulFirst = 0xAC00, kHangulLast = 0xD7A3;

template <size_t N>
bool InRanges(const CodeRange (&table)[N], char32_t c) {
  const CodeRange* it =
      std::upper_bound(table, table + N, c, [](char32_t v, const CodeRange& r) { return v < r.first; });
  return it != table && c <= (it - 1)->last;
}

template <size_t N>
const CodeMap* FindMap(const CodeMap (&table)[N], char32_t c) {
  const CodeMap* it = std::lower_bound(table, table + N, c, [](const CodeMap& m, char32_t v) { return m.cp < v; });
  return it != table + N && it->cp == c ? it : nullptr;
}

void AppendMapped(const CodeMap& m, std::u32string* out) {
  for (char32_t o : m.out) {
    if (o != 0) out->push_back(o);
  }
}

// UTF-8 -> code points. Each byte of an invalid or truncated sequence (and
// an overlong form, a surrogate, or a value past U+10FFFF) becomes U+FFFD.
std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    char32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto cont = static_cast<unsigned char>(s[i + k]);
      ok = (cont & 0xC0) == 0x80;
      c = (c << 6) | (cont & 0x3F);
    }
    static constexpr char32_t kMinOfLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && c >= kMinOfLength[len] && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
    out.push_back(ok ? c : kReplacement);
    i += ok ? len : 1;
  }
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool IsWhitespace(char32_t c) {
  return InRanges(kWhitespace, c);
}
bool IsPunctuation(char32_t c) {
  return InRanges(kPunctuation, c);
}

// The BertNormalizer steps, each a pass over the whole text as in HF (each
// maps one code point at a time, so the passes could be fused; kept apart to
// read like the reference).
std::u32string CleanText(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (InRanges(kCleanRemoved, c)) continue;
    out.push_back(IsWhitespace(c) ? U' ' : c);
  }
  return out;
}

std::u32string SpaceChinese(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (InRanges(kChinese, c)) {
      out += {U' ', c, U' '};
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// NFD of one code point with the Mn marks dropped.
void AppendStripped(char32_t c, std::u32string* out) {
  if (c >= kHangulFirst && c <= kHangulLast) {  // Unicode 3.12: syllable -> L V [T] jamo.
    const char32_t s = c - kHangulFirst;
    out->push_back(0x1100 + s / 588);
    out->push_back(0x1161 + (s % 588) / 28);
    if (s % 28 != 0) out->push_back(0x11A7 + s % 28);
    return;
  }
  if (InRanges(kStripRemoved, c)) return;
  const StripBlock* b = std::upper_bound(std::begin(kStripBlocks), std::end(kStripBlocks), c,
                                         [](char32_t v, const StripBlock& blk) { return v < blk.first; });
  if (b != std::begin(kStripBlocks) && c - (b - 1)->first < (b - 1)->size) {
    out->push_back((b - 1)->out[c - (b - 1)->first]);
    return;
  }
  if (const CodeMap* m = FindMap(kStripPairs, c)) {
    AppendMapped(*m, out);
    return;
  }
  out->push_back(c);
}

std::u32string StripAccents(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendStripped(c, &out);
  return out;
}

void AppendLower(char32_t c, std::u32string* out) {
  const CaseRun* r = std::upper_bound(std::begin(kLowerRuns), std::end(kLowerRuns), c,
                                      [](char32_t v, const CaseRun& run) { return v < run.first; });
  if (r != std::begin(kLowerRuns) && c <= (r - 1)->last && (c - (r - 1)->first) % (r - 1)->stride == 0) {
    out->push_back(static_cast<char32_t>(static_cast<int64_t>(c) + (r - 1)->delta));
  } else if (const CodeMap* m = FindMap(kLowerMulti, c)) {
    AppendMapped(*m, out);
  } else {
    out->push_back(c);
  }
}

std::u32string Lowercase(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendLower(c, &out);
  return out;
}

std::u32string RunNormalizer(const BertNormalizerOptions& opt, std::u32string s) {
  if (opt.clean_text) s = CleanText(s);
  if (opt.handle_chinese_chars) s = SpaceChinese(s);
  if (opt.strip_accents) s = StripAccents(s);
  if (opt.lowercase) s = Lowercase(s);
  return s;
}

// ---------------------------------------------------------------------------
// tokenizer.json

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DFAR_CHECK(in, path, ": cannot open the tokenizer file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A member of `obj` that must be there with the wanted JSON type.
const json& Need(const json& obj, const std::string& key, json::value_t type, const std::string& where,
                 const std::string& source) {
  DFAR_CHECK(obj.is_object() && obj.contains(key), source, ": key ", where, key, " is missing");
  const json& v = obj.at(key);
  const bool ok = type == json::value_t::number_unsigned ? v.is_number_integer() && v.get<int64_t>() >= 0
                  : type == json::value_t::boolean       ? v.is_boolean()
                                                         : v.type() == type;
  DFAR_CHECK(ok, source, ": key ", where, key, " has the wrong type (", v.type_name(), ")");
  return v;
}

std::string NeedString(const json& obj, const std::string& key, const std::string& where, const std::string& source) {
  return Need(obj, key, json::value_t::string, where, source).get<std::string>();
}

BertNormalizerOptions ParseNormalizer(const json& root, const std::string& source) {
  BertNormalizerOptions opt;
  const json& n = root.contains("normalizer") ? root.at("normalizer") : json();
  if (n.is_null()) return {false, false, false, false};
  const std::string type = NeedString(n, "type", "normalizer.", source);
  DFAR_CHECK(type == "BertNormalizer", source, ": normalizer.type is '", type, "'; only BertNormalizer is supported");
  auto flag = [&](const char* key, bool fallback) {
    if (!n.contains(key) || n.at(key).is_null()) return fallback;
    return Need(n, key, json::value_t::boolean, "normalizer.", source).get<bool>();
  };
  opt.clean_text = flag("clean_text", true);
  opt.handle_chinese_chars = flag("handle_chinese_chars", true);
  opt.lowercase = flag("lowercase", true);
  opt.strip_accents = flag("strip_accents", opt.lowercase);  // HF: strip_accents.unwrap_or(lowercase).
  return opt;
}

void CheckPreTokenizer(const json& root, const std::string& source) {
  DFAR_CHECK(root.contains("pre_tokenizer") && !root.at("pre_tokenizer").is_null(), source,
             ": key pre_tokenizer is missing; only BertPreTokenizer is supported");
  const std::string type = NeedString(root.at("pre_tokenizer"), "type", "pre_tokenizer.", source);
  DFAR_CHECK(type == "BertPreTokenizer", source, ": pre_tokenizer.type is '", type,
             "'; only BertPreTokenizer is supported");
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::Load(const std::string& path) {
  return FromJson(ReadFile(path), path);
}

int32_t WordPieceTokenizer::TokenToId(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& WordPieceTokenizer::IdToToken(int32_t id) const {
  DFAR_CHECK(id >= 0 && id < vocab_size() && !id_to_token_[id].empty(), source_, ": token id ", id,
             " is not in the vocabulary");
  return id_to_token_[id];
}

namespace {

// model: {"type": "WordPiece", "vocab": {token: id}, "unk_token", ...}.
void ParseVocab(const json& model, const std::string& source, std::unordered_map<std::string, int32_t>* vocab,
                std::vector<std::string>* id_to_token) {
  const json& v = Need(model, "vocab", json::value_t::object, "model.", source);
  DFAR_CHECK(!v.empty(), source, ": model.vocab is empty");
  for (const auto& [token, id_json] : v.items()) {
    DFAR_CHECK(id_json.is_number_integer() && id_json.get<int64_t>() >= 0 && id_json.get<int64_t>() < (1 << 30), source,
               ": model.vocab[\"", token, "\"] is not a token id");
    const auto id = id_json.get<int32_t>();
    (*vocab)[token] = id;
    if (static_cast<size_t>(id) >= id_to_token->size()) id_to_token->resize(id + 1);
    (*id_to_token)[id] = token;
  }
}

// The id of a special token named by the post-processor: it must be in the vocab.
int32_t SpecialId(const std::unordered_map<std::string, int32_t>& vocab, const std::string& token, const char* key,
                  const std::string& source) {
  auto it = vocab.find(token);
  DFAR_CHECK(it != vocab.end(), source, ": ", key, " names '", token, "', which is not in model.vocab");
  return it->second;
}

// TemplateProcessing "single": [SpecialToken | Sequence A]; BertProcessing: cls/sep pairs.
void ParsePostProcessor(const json& root, const std::string& source,
                        const std::unordered_map<std::string, int32_t>& vocab, std::vector<int32_t>* prefix,
                        std::vector<int32_t>* suffix) {
  if (!root.contains("post_processor") || root.at("post_processor").is_null()) return;
  const json& pp = root.at("post_processor");
  const std::string type = NeedString(pp, "type", "post_processor.", source);
  if (type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& pair = Need(pp, key, json::value_t::array, "post_processor.", source);
      DFAR_CHECK(pair.size() == 2 && pair[0].is_string() && pair[1].is_number_integer(), source, ": post_processor.",
                 key, " is not [token, id]");
      (key[0] == 'c' ? prefix : suffix)
          ->push_back(SpecialId(vocab, pair[0].get<std::string>(), "post_processor.cls/sep", source));
    }
    return;
  }
  DFAR_CHECK(type == "TemplateProcessing", source, ": post_processor.type is '", type,
             "'; only TemplateProcessing and BertProcessing are supported");
  const json& specials = Need(pp, "special_tokens", json::value_t::object, "post_processor.", source);
  bool seen_sequence = false;
  for (const json& item : Need(pp, "single", json::value_t::array, "post_processor.", source)) {
    if (item.contains("Sequence")) {
      DFAR_CHECK(!seen_sequence, source, ": post_processor.single has two Sequence items");
      seen_sequence = true;
      continue;
    }
    const std::string name =
        NeedString(Need(item, "SpecialToken", json::value_t::object, "post_processor.single[].", source), "id",
                   "post_processor.single[].SpecialToken.", source);
    DFAR_CHECK(specials.contains(name), source, ": post_processor.special_tokens has no entry '", name, "'");
    for (const json& id :
         Need(specials.at(name), "ids", json::value_t::array, "post_processor.special_tokens.", source)) {
      DFAR_CHECK(id.is_number_integer(), source, ": post_processor.special_tokens.", name, ".ids holds a non-integer");
      (seen_sequence ? suffix : prefix)->push_back(id.get<int32_t>());
    }
  }
  DFAR_CHECK(seen_sequence, source, ": post_processor.single has no Sequence item");
}

// added_tokens: (content, id), to be matched whole in the raw text.
std::vector<std::pair<std::string, int32_t>> ParseAddedTokens(const json& root, const std::string& source) {
  std::vector<std::pair<std::string, int32_t>> out;
  if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return out;
  for (const json& a : Need(root, "added_tokens", json::value_t::array, "", source)) {
    const std::string content = NeedString(a, "content", "added_tokens[].", source);
    DFAR_CHECK(!content.empty(), source, ": added_tokens[] has an empty content");
    const int64_t id = Need(a, "id", json::value_t::number_unsigned, "added_tokens[].", source).get<int64_t>();
    DFAR_CHECK(id < (1 << 30), source, ": added_tokens[] '", content, "' has id ", id, ", too large");
    for (const char* key : {"single_word", "lstrip", "rstrip", "normalized"}) {
      const bool on = a.contains(key) && Need(a, key, json::value_t::boolean, "added_tokens[].", source).get<bool>();
      DFAR_CHECK(!on, source, ": added_tokens[] '", content, "' sets ", key, ", which is not supported");
    }
    out.emplace_back(content, static_cast<int32_t>(id));
  }
  return out;
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::FromJson(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    DFAR_THROW(source, ": not valid JSON: ", e.what());
  }
  DFAR_CHECK(root.is_object(), source, ": the top level is not a JSON object");
  WordPieceTokenizer t;
  t.source_ = source;
  const json& model = Need(root, "model", json::value_t::object, "", source);
  const std::string type = NeedString(model, "type", "model.", source);
  DFAR_CHECK(type == "WordPiece", source, ": model.type is '", type, "', not 'WordPiece'");
  ParseVocab(model, source, &t.vocab_, &t.id_to_token_);
  const std::string unk = NeedString(model, "unk_token", "model.", source);
  t.unk_id_ = SpecialId(t.vocab_, unk, "model.unk_token", source);
  if (model.contains("continuing_subword_prefix")) {
    t.continuing_prefix_ = NeedString(model, "continuing_subword_prefix", "model.", source);
  }
  if (model.contains("max_input_chars_per_word")) {
    t.max_input_chars_per_word_ =
        Need(model, "max_input_chars_per_word", json::value_t::number_unsigned, "model.", source).get<size_t>();
  }
  t.pad_id_ = std::max(t.TokenToId("[PAD]"), 0);
  t.normalizer_ = ParseNormalizer(root, source);
  CheckPreTokenizer(root, source);
  ParsePostProcessor(root, source, t.vocab_, &t.prefix_, &t.suffix_);
  // An added token's id past the model's vocab extends the id range, as HF's
  // added vocabulary does; WordPiece itself never emits it.
  for (auto& [content, id] : ParseAddedTokens(root, source)) {
    if (static_cast<size_t>(id) >= t.id_to_token_.size()) t.id_to_token_.resize(id + 1);
    if (t.id_to_token_[id].empty()) t.id_to_token_[id] = content;
    t.added_.push_back({std::move(content), id});
  }
  for (int32_t id : t.prefix_) t.IdToToken(id);  // Throws for ids outside the vocab.
  for (int32_t id : t.suffix_) t.IdToToken(id);
  return t;
}

std::string WordPieceTokenizer::Normalize(std::string_view text) const {
  std::string out;
  for (char32_t c : RunNormalizer(normalizer_, DecodeUtf8(text))) AppendUtf8(c, &out);
  return out;
}

size_t WordPieceTokenizer::MatchAddedToken(std::string_view text, size_t pos, int32_t* id) const {
  size_t best = 0;
  for (const AddedToken& a : added_) {
    if (a.content.size() > best && text.compare(pos, a.content.size(), a.content) == 0) {
      best = a.content.size();
      *id = a.id;
    }
  }
  return best;
}

// Greedy longest-match-first over code point boundaries (HF WordPiece::tokenize).
void WordPieceTokenizer::AppendWord(const std::string& word, size_t num_chars, std::vector<int32_t>* ids) const {
  if (num_chars > max_input_chars_per_word_) {
    ids->push_back(unk_id_);
    return;
  }
  const size_t before = ids->size();
  std::string piece;
  for (size_t start = 0; start < word.size();) {
    size_t end = word.size();
    int32_t found = -1;
    for (; end > start; --end) {
      if (end < word.size() && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) continue;
      piece = start > 0 ? continuing_prefix_ : std::string();
      piece.append(word, start, end - start);
      found = TokenToId(piece);
      if (found >= 0) break;
    }
    if (found < 0) {  // No piece starts here: the whole word is unknown.
      ids->resize(before);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

// Normalizer, then BertPreTokenizer, then WordPiece on each word.
void WordPieceTokenizer::AppendSegment(std::string_view segment, std::vector<int32_t>* ids) const {
  const std::u32string text = RunNormalizer(normalizer_, DecodeUtf8(segment));
  std::string word;
  size_t chars = 0;
  auto flush = [&] {
    if (chars > 0) AppendWord(word, chars, ids);
    word.clear();
    chars = 0;
  };
  for (char32_t c : text) {
    if (IsWhitespace(c)) {
      flush();
    } else if (IsPunctuation(c)) {
      flush();
      AppendUtf8(c, &word);
      chars = 1;
      flush();
    } else {
      AppendUtf8(c, &word);
      ++chars;
    }
  }
  flush();
}

std::vector<int32_t> WordPieceTokenizer::Encode(std::string_view text, int64_t max_length) const {
  DFAR_CHECK(max_length <= 0 || max_length >= num_special_tokens(), source_, ": max_length ", max_length,
             " leaves no room for the ", num_special_tokens(), " special tokens");
  std::vector<int32_t> body;
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t id = -1;
    const size_t len = MatchAddedToken(text, pos, &id);
    if (len == 0) {
      ++pos;
      continue;
    }
    AppendSegment(text.substr(segment_start, pos - segment_start), &body);
    body.push_back(id);
    pos += len;
    segment_start = pos;
  }
  AppendSegment(text.substr(segment_start), &body);
  if (max_length > 0 && static_cast<int64_t>(body.size()) > max_length - num_special_tokens()) {
    body.resize(max_length - num_special_tokens());
  }
  std::vector<int32_t> ids(prefix_);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

}  // namespace dfar
