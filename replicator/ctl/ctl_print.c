/*
 * ctl_print.c: tandemctl's output helpers: the one-line refusal on
 * stderr (the CLI contract: one line, one write), bytes and ages in human
 * units, and a generic protobuf -> JSON printer (status --json and
 * journal check --json follow additive changes of the proto for free).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl_int.h"

/* ------------------------------------------------------------ messages -- */

void ctl_errf(const char *fmt, ...)
{
    /* One line, one write(2): refusals stay readable when interleaved. */
    char buf[1536];
    va_list ap;
    int n = snprintf(buf, sizeof buf, PROG ": ");
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    /* Never let a server message break the one-line rule. */
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t len = strlen(buf);
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}

const char *ctl_human_bytes(char *buf, size_t sz, double v)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, sz, "%.0f%s", v, u[i]);
    else
        snprintf(buf, sz, "%.1f%s", v, u[i]);
    return buf;
}

const char *ctl_human_age(char *buf, size_t sz, double s)
{
    if (s < 0 || isnan(s))
        snprintf(buf, sz, "unknown");
    else if (s < 10)
        snprintf(buf, sz, "%.2fs", s);
    else if (s < 120)
        snprintf(buf, sz, "%.0fs", s);
    else if (s < 7200)
        snprintf(buf, sz, "%.0fm", s / 60);
    else
        snprintf(buf, sz, "%.1fh", s / 3600);
    return buf;
}

const char *ctl_human_rpo(char *buf, size_t sz, double s)
{
    if (s >= 0 && s < 60)
        snprintf(buf, sz, "%.3fs", s);
    else
        ctl_human_age(buf, sz, s);
    return buf;
}

/* ------------------------------------------------------- JSON printer -- */

void ctl_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}


static void json_scalar(FILE *f, const ProtobufCFieldDescriptor *fd,
                        const void *p, int ind)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(f, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(f, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = fd->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p
                                                     : *(const double *)p;
        if (isfinite(d))
            fprintf(f, "%.10g", d);
        else
            fprintf(f, "null");
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        fprintf(f, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
            fd->descriptor, *(const int *)p);
        if (ev)
            ctl_json_str(f, ev->name);
        else
            fprintf(f, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        ctl_json_str(f, *(char *const *)p ? *(char *const *)p : "");
        break;
    case PROTOBUF_C_TYPE_BYTES:
        fprintf(f, "null");
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (*(ProtobufCMessage *const *)p)
            ctl_json_msg(f, *(ProtobufCMessage *const *)p, ind);
        else
            fprintf(f, "null");
        break;
    }
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 4;
    }
}

/* A message entry type of a proto3 map: exactly fields key (1), value (2). */
static int is_map_entry(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 2 && !strcmp(d->fields[0].name, "key") &&
           !strcmp(d->fields[1].name, "value") &&
           d->fields[0].type == PROTOBUF_C_TYPE_STRING &&
           d->fields[1].type == PROTOBUF_C_TYPE_STRING;
}

void ctl_json_msg(FILE *f, const ProtobufCMessage *m, int ind)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    fprintf(f, "{");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const char *base = (const char *)m;
        fprintf(f, "%s\n%*s", i ? "," : "", ind + 2, "");
        ctl_json_str(f, fd->name);
        fprintf(f, ": ");
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + fd->quantifier_offset);
            const char *arr = *(char *const *)(base + fd->offset);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
                is_map_entry(fd->descriptor)) {
                const ProtobufCMessageDescriptor *ed = fd->descriptor;
                fprintf(f, "{");
                for (size_t j = 0; j < n; j++) {
                    const char *e = ((char *const *)arr)[j];
                    fprintf(f, "%s", j ? ", " : "");
                    ctl_json_str(f, *(char *const *)(e + ed->fields[0].offset));
                    fprintf(f, ": ");
                    ctl_json_str(f, *(char *const *)(e + ed->fields[1].offset));
                }
                fprintf(f, "}");
                continue;
            }
            size_t es = type_size(fd->type);
            fprintf(f, "[");
            for (size_t j = 0; j < n; j++) {
                if (j) fprintf(f, ",");
                fprintf(f, "\n%*s", ind + 4, "");
                json_scalar(f, fd, arr + j * es, ind + 4);
            }
            if (n) fprintf(f, "\n%*s", ind + 2, "");
            fprintf(f, "]");
        } else {
            json_scalar(f, fd, base + fd->offset, ind + 2);
        }
    }
    fprintf(f, "\n%*s}", ind, "");
}
