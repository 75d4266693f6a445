package testmodel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// GGUF constants (see ggml/include/gguf.h in llama.cpp).
const (
	ggufMagic     = "GGUF"
	ggufVersion   = 3
	ggufAlignment = 32

	ggufTypeUint32  = 4
	ggufTypeInt32   = 5
	ggufTypeFloat32 = 6
	ggufTypeBool    = 7
	ggufTypeString  = 8
	ggufTypeArray   = 9

	ggmlTypeF32 = 0
	ggmlTypeF16 = 1
)

// kv is one metadata key/value pair. value is one of uint32, float32, bool,
// string, []string, []float32 or []int32.
type kv struct {
	key   string
	value any
}

// tensor is one F32 or F16 tensor. dims are in GGUF order: dims[0] (ne0)
// is the innermost, contiguous dimension. fill receives a zeroed slice of
// elems() values to set.
type tensor struct {
	name string
	dims []uint64
	f16  bool
	fill func(data []float32)
}

func (t *tensor) elems() uint64 {
	n := uint64(1)
	for _, d := range t.dims {
		n *= d
	}
	return n
}

func (t *tensor) ggmlType() uint32 {
	if t.f16 {
		return ggmlTypeF16
	}
	return ggmlTypeF32
}

func (t *tensor) bytes() uint64 {
	if t.f16 {
		return 2 * t.elems()
	}
	return 4 * t.elems()
}

// header accumulates the little-endian bytes of the GGUF header.
type header struct{ bytes.Buffer }

func (h *header) u32(v uint32) { h.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (h *header) u64(v uint64) { h.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (h *header) f32(v float32) {
	h.u32(math.Float32bits(v))
}
func (h *header) str(s string) {
	h.u64(uint64(len(s)))
	h.WriteString(s)
}

func (h *header) kv(p kv) error {
	h.str(p.key)
	switch v := p.value.(type) {
	case uint32:
		h.u32(ggufTypeUint32)
		h.u32(v)
	case float32:
		h.u32(ggufTypeFloat32)
		h.f32(v)
	case bool:
		h.u32(ggufTypeBool)
		if v {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
	case string:
		h.u32(ggufTypeString)
		h.str(v)
	case []string:
		h.u32(ggufTypeArray)
		h.u32(ggufTypeString)
		h.u64(uint64(len(v)))
		for _, s := range v {
			h.str(s)
		}
	case []float32:
		h.u32(ggufTypeArray)
		h.u32(ggufTypeFloat32)
		h.u64(uint64(len(v)))
		for _, f := range v {
			h.f32(f)
		}
	case []int32:
		h.u32(ggufTypeArray)
		h.u32(ggufTypeInt32)
		h.u64(uint64(len(v)))
		for _, i := range v {
			h.u32(uint32(i))
		}
	default:
		return fmt.Errorf("testmodel: metadata %q: unsupported type %T", p.key, p.value)
	}
	return nil
}

func padding(offset, align uint64) uint64 {
	return (align - offset%align) % align
}

// writeGGUF writes a complete GGUF v3 file: header, key/value metadata,
// tensor infos, padding to the alignment, then each tensor's data aligned
// to ggufAlignment. Offsets in the tensor infos are relative to the start
// of the data section.
func writeGGUF(w io.Writer, kvs []kv, tensors []tensor) error {
	var h header
	h.WriteString(ggufMagic)
	h.u32(ggufVersion)
	h.u64(uint64(len(tensors)))
	h.u64(uint64(len(kvs)))
	for _, p := range kvs {
		if err := h.kv(p); err != nil {
			return err
		}
	}
	var offset uint64
	for i := range tensors {
		t := &tensors[i]
		h.str(t.name)
		h.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			h.u64(d)
		}
		h.u32(t.ggmlType())
		offset += padding(offset, ggufAlignment)
		h.u64(offset)
		offset += t.bytes()
	}
	h.Write(make([]byte, padding(uint64(h.Len()), ggufAlignment)))

	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.Write(h.Bytes()); err != nil {
		return err
	}
	var zeros [ggufAlignment]byte
	var data []float32
	var raw []byte
	offset = 0
	for i := range tensors {
		t := &tensors[i]
		pad := padding(offset, ggufAlignment)
		if _, err := bw.Write(zeros[:pad]); err != nil {
			return err
		}
		offset += pad
		n := t.elems()
		if uint64(cap(data)) < n {
			data = make([]float32, n)
		}
		data = data[:n]
		clear(data)
		t.fill(data)
		raw = raw[:0]
		if t.f16 {
			for _, f := range data {
				raw = binary.LittleEndian.AppendUint16(raw, float16bits(f))
			}
		} else {
			for _, f := range data {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
		}
		if _, err := bw.Write(raw); err != nil {
			return err
		}
		offset += t.bytes()
	}
	return bw.Flush()
}

// float16bits converts f to IEEE 754 half precision, rounding to nearest
// even; values too large become infinities.
func float16bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // infinity or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal (or zero) in half precision: the value in units of
		// 2^-24 is mant24 >> shift.
		shift := uint(14 - e)
		if exp == 0 || shift > 24 {
			return sign
		}
		m := mant | 0x800000
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // a carry into the exponent is still correct (up to infinity)
	}
	return sign | uint16(r)
}
