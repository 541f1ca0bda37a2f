/*
 * Pictures (libvips): JPEG, PNG, GIF and WebP are accepted, shrunk to fit
 * the avatar square and re-encoded as JPEG without any metadata (no EXIF);
 * text, truncated images, other formats, oversized uploads and pixel bombs
 * are refused; names are content-derived, per user and per secret; files
 * are stored atomically, readable, deduplicated and removable.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <vips/vips.h>

#include "core/picture.h"

static char dir[] = "/tmp/test_picture_XXXXXX";
static char pictures_dir[256];
static const unsigned char secret[32] = "an example 256-bit secret key..";
static struct picture_store *store;

static struct picture_store *make_store(size_t max_bytes, const unsigned char *key)
{
    struct config_picture cfg = {0};
    snprintf(cfg.dir, sizeof(cfg.dir), "%s", pictures_dir);
    cfg.max_bytes = max_bytes;
    cfg.max_side_px = 256;
    snprintf(cfg.url_prefix, sizeof(cfg.url_prefix), "/pictures/");
    return picture_store_create(&cfg, key, 32);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL) return -1;
    /* A nested path that does not exist yet: the store creates it. */
    snprintf(pictures_dir, sizeof(pictures_dir), "%s/data/pictures", dir);
    store = make_store(10 * 1024 * 1024, secret);
    return store == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    picture_store_destroy(store);
    DIR *d = opendir(pictures_dir);
    if (d != NULL) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.')) continue;
            snprintf(path, sizeof(path), "%s/%s", pictures_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(pictures_dir);
    char data[300];
    snprintf(data, sizeof(data), "%s/data", dir);
    rmdir(data);
    rmdir(dir);
    return 0;
}

/* Encodes a width x height test image (a gradient, so it is not trivially
 * compressible to nothing) in the format of suffix (".png", ".jpg"...).
 * The caller g_free()s the buffer. */
static void *make_image(int width, int height, const char *suffix, size_t *len)
{
    VipsImage *xy = NULL, *x = NULL, *u8 = NULL, *rgb = NULL;
    void *buf = NULL;
    assert_int_equal(vips_xyz(&xy, width, height, NULL), 0);
    assert_int_equal(vips_extract_band(xy, &x, 0, NULL), 0);
    assert_int_equal(vips_cast(x, &u8, VIPS_FORMAT_UCHAR, NULL), 0);
    VipsImage *bands[3] = {u8, u8, u8};
    assert_int_equal(vips_bandjoin(bands, &rgb, 3, NULL), 0);
    assert_int_equal(vips_image_write_to_buffer(rgb, suffix, &buf, len, NULL), 0);
    g_object_unref(rgb);
    g_object_unref(u8);
    g_object_unref(x);
    g_object_unref(xy);
    return buf;
}

/* 1 when img has a metadata field whose name starts with prefix. */
static int has_field_prefix(VipsImage *img, const char *prefix)
{
    gchar **fields = vips_image_get_fields(img);
    int found = 0;
    for (int i = 0; fields[i] != NULL; i++)
        if (strncmp(fields[i], prefix, strlen(prefix)) == 0) found = 1;
    g_strfreev(fields);
    return found;
}

static int is_jpeg(const void *data, size_t len)
{
    const unsigned char *p = data;
    return len > 4 && p[0] == 0xff && p[1] == 0xd8 && p[len - 2] == 0xff && p[len - 1] == 0xd9;
}

static void accepts(const char *suffix)
{
    size_t len;
    void *img = make_image(600, 400, suffix, &len);
    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", img, len, 1, &blob), PICTURE_OK);
    assert_true(is_jpeg(blob.data, blob.len));
    /* Shrunk to fit 256x256, aspect ratio kept. */
    assert_int_equal(blob.width, 256);
    assert_in_range(blob.height, 170, 171);
    assert_true(picture_name_is_valid(blob.name));
    /* The output decodes again at the size reported. */
    VipsImage *back = vips_image_new_from_buffer(blob.data, blob.len, "", NULL);
    assert_non_null(back);
    assert_int_equal(vips_image_get_width(back), blob.width);
    assert_int_equal(vips_image_get_height(back), blob.height);
    g_object_unref(back);
    picture_blob_free(&blob);
    g_free(img);
}

static void png_is_accepted_resized_and_reencoded_as_jpeg(void **state)
{
    (void)state;
    accepts(".png");
}

static void jpeg_is_accepted(void **state)
{
    (void)state;
    accepts(".jpg");
}

static void gif_is_accepted(void **state)
{
    (void)state;
    accepts(".gif");
}

static void webp_is_accepted(void **state)
{
    (void)state;
    accepts(".webp");
}

static void small_picture_is_not_enlarged(void **state)
{
    (void)state;
    size_t len;
    void *img = make_image(40, 30, ".png", &len);
    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", img, len, 1, &blob), PICTURE_OK);
    assert_int_equal(blob.width, 40);
    assert_int_equal(blob.height, 30);
    picture_blob_free(&blob);
    g_free(img);
}

static void transparent_png_is_flattened_onto_white(void **state)
{
    (void)state;
    VipsImage *xy = NULL, *x = NULL, *u8 = NULL, *rgba = NULL, *zero = NULL, *alpha = NULL;
    void *png = NULL;
    size_t len;
    assert_int_equal(vips_xyz(&xy, 64, 64, NULL), 0);
    assert_int_equal(vips_extract_band(xy, &x, 0, NULL), 0);
    assert_int_equal(vips_cast(x, &u8, VIPS_FORMAT_UCHAR, NULL), 0);
    assert_int_equal(vips_black(&zero, 64, 64, NULL), 0);
    assert_int_equal(vips_cast(zero, &alpha, VIPS_FORMAT_UCHAR, NULL), 0); /* fully transparent */
    VipsImage *bands[4] = {u8, u8, u8, alpha};
    assert_int_equal(vips_bandjoin(bands, &rgba, 4, NULL), 0);
    assert_int_equal(vips_pngsave_buffer(rgba, &png, &len, NULL), 0);
    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", png, len, 1, &blob), PICTURE_OK);
    assert_true(is_jpeg(blob.data, blob.len));
    VipsImage *back = vips_image_new_from_buffer(blob.data, blob.len, "", NULL);
    assert_non_null(back);
    assert_int_equal(vips_image_get_bands(back), 3);
    double avg = 0;
    assert_int_equal(vips_avg(back, &avg, NULL), 0);
    assert_true(avg > 250.0); /* transparent everywhere: white, not black */
    g_object_unref(back);
    picture_blob_free(&blob);
    g_free(png);
    VipsImage *all[] = {rgba, alpha, zero, u8, x, xy};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        g_object_unref(all[i]);
}

static void exif_metadata_is_stripped(void **state)
{
    (void)state;
    VipsImage *xy = NULL, *x = NULL, *u8 = NULL;
    void *jpeg = NULL;
    size_t len;
    assert_int_equal(vips_xyz(&xy, 300, 200, NULL), 0);
    assert_int_equal(vips_extract_band(xy, &x, 0, NULL), 0);
    assert_int_equal(vips_cast(x, &u8, VIPS_FORMAT_UCHAR, NULL), 0);
    /* libvips writes exif-ifd* fields into the JPEG's EXIF block: a GPS
     * position, an author and a description. */
    vips_image_set_string(u8, "exif-ifd3-GPSLatitudeRef", "N");
    vips_image_set_string(u8, "exif-ifd3-GPSLatitude", "51/1 30/1 1234/100");
    vips_image_set_string(u8, "exif-ifd0-Artist", "SecretArtistMarker");
    vips_image_set_string(u8, "exif-ifd0-ImageDescription", "SecretDescriptionMarker");
    assert_int_equal(vips_jpegsave_buffer(u8, &jpeg, &len, NULL), 0);
    g_object_unref(u8);
    g_object_unref(x);
    g_object_unref(xy);
    /* The input does carry them. */
    assert_non_null(memmem(jpeg, len, "SecretArtistMarker", 18));
    VipsImage *in = vips_image_new_from_buffer(jpeg, len, "", NULL);
    assert_non_null(in);
    assert_true(has_field_prefix(in, "exif-ifd3-GPS"));
    g_object_unref(in);

    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", jpeg, len, 1, &blob), PICTURE_OK);
    assert_null(memmem(blob.data, blob.len, "SecretArtistMarker", 18));
    assert_null(memmem(blob.data, blob.len, "SecretDescriptionMarker", 23));
    VipsImage *back = vips_image_new_from_buffer(blob.data, blob.len, "", NULL);
    assert_non_null(back);
    /* No EXIF block at all: not even libvips' own. */
    assert_null(memmem(blob.data, blob.len, "Exif", 4));
    assert_false(has_field_prefix(back, "exif-data"));
    assert_false(has_field_prefix(back, "exif-ifd3-"));
    assert_false(has_field_prefix(back, "exif-ifd0-Artist"));
    assert_false(has_field_prefix(back, "exif-ifd0-ImageDescription"));
    assert_false(has_field_prefix(back, "xmp-data"));
    assert_false(has_field_prefix(back, "iptc-data"));
    g_object_unref(back);
    picture_blob_free(&blob);
    g_free(jpeg);
}

static void refused(const void *data, size_t len, int want)
{
    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", data, len, 1, &blob), want);
    assert_null(blob.data);
    assert_int_equal(blob.len, 0);
}

static void text_file_is_refused(void **state)
{
    (void)state;
    const char text[] = "This is a text file renamed to picture.png\n";
    refused(text, sizeof(text) - 1, PICTURE_UNSUPPORTED);
    refused("", 0, PICTURE_UNSUPPORTED);
    /* A PNG signature followed by garbage. */
    const char fake[] = "\x89PNG\r\n\x1a\n garbage garbage garbage garbage garbage";
    refused(fake, sizeof(fake) - 1, PICTURE_UNSUPPORTED);
}

static void truncated_images_are_refused(void **state)
{
    (void)state;
    const char *suffixes[] = {".png", ".jpg", ".gif", ".webp"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t len;
        void *img = make_image(600, 400, suffixes[i], &len);
        refused(img, len * 2 / 3, PICTURE_UNSUPPORTED);
        g_free(img);
    }
}

static void other_image_formats_are_refused(void **state)
{
    (void)state;
    size_t len;
    void *tiff = make_image(60, 40, ".tif", &len);
    refused(tiff, len, PICTURE_UNSUPPORTED);
    g_free(tiff);
    const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
    refused(svg, sizeof(svg) - 1, PICTURE_UNSUPPORTED);
    const char pgm[] = "P5\n2 2\n255\n\x01\x02\x03\x04";
    refused(pgm, sizeof(pgm) - 1, PICTURE_UNSUPPORTED);
}

static void upload_over_max_bytes_is_refused(void **state)
{
    (void)state;
    size_t len;
    void *img = make_image(300, 200, ".png", &len);
    struct picture_store *small = make_store(len - 1, secret);
    assert_non_null(small);
    struct picture_blob blob;
    assert_int_equal(picture_prepare(small, "user1", img, len, 1, &blob), PICTURE_TOO_LARGE);
    picture_store_destroy(small);
    small = make_store(len, secret);
    assert_non_null(small);
    assert_int_equal(picture_prepare(small, "user1", img, len, 1, &blob), PICTURE_OK);
    picture_blob_free(&blob);
    picture_store_destroy(small);
    g_free(img);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void pixel_bomb_is_refused_before_decoding(void **state)
{
    (void)state;
    size_t len;
    unsigned char *png = make_image(64, 64, ".png", &len);
    /* Rewrite the IHDR chunk (offset 8: length, type, width, height, ...,
     * CRC at 29) to announce 20000 x 20000 pixels = 400 megapixels. */
    assert_memory_equal(png + 12, "IHDR", 4);
    put_be32(png + 16, 20000);
    put_be32(png + 20, 20000);
    put_be32(png + 29, crc32_of(png + 12, 17));
    refused(png, len, PICTURE_TOO_MANY_PIXELS);
    g_free(png);
}

static void name_depends_on_content_user_and_secret(void **state)
{
    (void)state;
    size_t la, lb;
    void *a = make_image(300, 200, ".png", &la);
    void *b = make_image(200, 300, ".png", &lb);
    struct picture_blob a1, a2, b1, a_other_user, a_other_secret;
    assert_int_equal(picture_prepare(store, "user1", a, la, 1, &a1), PICTURE_OK);
    assert_int_equal(picture_prepare(store, "user1", a, la, 1, &a2), PICTURE_OK);
    assert_int_equal(picture_prepare(store, "user1", b, lb, 1, &b1), PICTURE_OK);
    assert_int_equal(picture_prepare(store, "user2", a, la, 1, &a_other_user), PICTURE_OK);
    unsigned char other[32];
    memcpy(other, secret, sizeof(other));
    other[0] ^= 1;
    struct picture_store *s2 = make_store(10 * 1024 * 1024, other);
    assert_non_null(s2);
    assert_int_equal(picture_prepare(s2, "user1", a, la, 1, &a_other_secret), PICTURE_OK);
    assert_string_equal(a1.name, a2.name);
    assert_string_not_equal(a1.name, b1.name);
    assert_string_not_equal(a1.name, a_other_user.name);
    assert_string_not_equal(a1.name, a_other_secret.name);
    picture_blob_free(&a1);
    picture_blob_free(&a2);
    picture_blob_free(&b1);
    picture_blob_free(&a_other_user);
    picture_blob_free(&a_other_secret);
    picture_store_destroy(s2);
    g_free(a);
    g_free(b);
}

static void save_is_atomic_readable_deduplicated_and_removable(void **state)
{
    (void)state;
    size_t len;
    void *img = make_image(300, 200, ".jpg", &len);
    struct picture_blob blob;
    assert_int_equal(picture_prepare(store, "user1", img, len, 1, &blob), PICTURE_OK);
    int created = -1;
    assert_int_equal(picture_save(store, &blob, &created), PICTURE_OK);
    assert_int_equal(created, 1);

    char path[512];
    snprintf(path, sizeof(path), "%s/%s", pictures_dir, blob.name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((int)st.st_size, (int)blob.len);
    assert_int_equal(st.st_mode & 0777, 0644);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *back = malloc(blob.len);
    assert_non_null(back);
    assert_int_equal(fread(back, 1, blob.len, f), blob.len);
    fclose(f);
    assert_memory_equal(back, blob.data, blob.len);
    free(back);

    /* The same picture again: same name, existing file kept. */
    assert_int_equal(picture_save(store, &blob, &created), PICTURE_OK);
    assert_int_equal(created, 0);

    /* No temporary file is left behind. */
    DIR *d = opendir(pictures_dir);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        assert_true(picture_name_is_valid(e->d_name));
        files++;
    }
    closedir(d);
    assert_true(files >= 1);

    assert_int_equal(picture_remove(store, blob.name), PICTURE_OK);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* Already gone is fine. */
    assert_int_equal(picture_remove(store, blob.name), PICTURE_OK);
    picture_blob_free(&blob);
    g_free(img);
}

static void remove_refuses_names_that_are_not_ours(void **state)
{
    (void)state;
    assert_int_equal(picture_remove(store, "../../etc/passwd"), PICTURE_ERROR);
    assert_int_equal(picture_remove(store, "0123456789abcdef0123456789abcdef.png"), PICTURE_ERROR);
    assert_int_equal(picture_remove(store, "/0123456789abcdef0123456789abcde.jpg"), PICTURE_ERROR);
    assert_false(picture_name_is_valid(NULL));
    assert_false(picture_name_is_valid(""));
    assert_true(picture_name_is_valid("0123456789abcdef0123456789abcdef.jpg"));
    assert_false(picture_name_is_valid("0123456789ABCDEF0123456789abcdef.jpg"));
}

int main(int argc, char **argv)
{
    (void)argc;
    if (sodium_init() < 0 || VIPS_INIT(argv[0]) != 0) return 1;
    picture_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(png_is_accepted_resized_and_reencoded_as_jpeg),
        cmocka_unit_test(jpeg_is_accepted),
        cmocka_unit_test(gif_is_accepted),
        cmocka_unit_test(webp_is_accepted),
        cmocka_unit_test(transparent_png_is_flattened_onto_white),
        cmocka_unit_test(small_picture_is_not_enlarged),
        cmocka_unit_test(exif_metadata_is_stripped),
        cmocka_unit_test(text_file_is_refused),
        cmocka_unit_test(truncated_images_are_refused),
        cmocka_unit_test(other_image_formats_are_refused),
        cmocka_unit_test(upload_over_max_bytes_is_refused),
        cmocka_unit_test(pixel_bomb_is_refused_before_decoding),
        cmocka_unit_test(name_depends_on_content_user_and_secret),
        cmocka_unit_test(save_is_atomic_readable_deduplicated_and_removable),
        cmocka_unit_test(remove_refuses_names_that_are_not_ours),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    vips_shutdown();
    return rc;
}
