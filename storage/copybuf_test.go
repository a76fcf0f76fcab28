package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

// trickle delivers data in pieces of at most step bytes, then err (io.EOF if
// nil). seen, if set, runs before each read with the bytes delivered so far.
type trickle struct {
	data []byte
	step int
	err  error
	seen func(delivered int)
	off  int
}

func (t *trickle) Read(p []byte) (int, error) {
	if t.seen != nil {
		t.seen(t.off)
	}
	if t.off == len(t.data) {
		if t.err != nil {
			return 0, t.err
		}
		return 0, io.EOF
	}
	n := min(len(p), t.step, len(t.data)-t.off)
	copy(p, t.data[t.off:t.off+n])
	t.off += n
	return n, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// writeSizes records the size of every write.
type writeSizes struct {
	bytes.Buffer
	sizes []int
	fail  error // returned by every write after the first
}

func (w *writeSizes) Write(p []byte) (int, error) {
	if w.fail != nil && len(w.sizes) > 0 {
		return 0, w.fail
	}
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}

func newCopy(data []byte, step int, err error) grownSource {
	return grownSource{r: &trickle{data: data, step: step, err: err}, bufs: &copyBuffers{}}
}

func wantWrites(t *testing.T, got []int, want ...int) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("writes %v, want %v", got, want)
	}
}

// A client whose bytes wait in the socket fills the first buffer; from then
// on the copy reads and writes in large pieces.
func TestGrownSourceGrowsForAFastClient(t *testing.T) {
	data := randomBytes(smallCopyBuffer + 2*largeCopyBuffer + 1000)
	var dst writeSizes
	n, err := io.Copy(&dst, newCopy(data, 1<<20, nil))
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d, %v (equal %v); want %d", n, err, bytes.Equal(dst.Bytes(), data), len(data))
	}
	wantWrites(t, dst.sizes, smallCopyBuffer, largeCopyBuffer, largeCopyBuffer, 1000)
}

// A client that trickles never fills the small buffer: every piece is
// written as it arrives, and no large buffer is taken.
func TestGrownSourceStaysSmallForASlowClient(t *testing.T) {
	data := randomBytes(5 * 1500)
	var dst writeSizes
	src := newCopy(data, 1500, nil)
	if _, err := io.Copy(&dst, src); err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copy: %v", err)
	}
	wantWrites(t, dst.sizes, 1500, 1500, 1500, 1500, 1500)
	if b := src.bufs.large.Get(); b != nil {
		t.Fatal("a slow client's copy took a large buffer")
	}
}

// Large buffers are bounded: while as many as allowed are lent, a fast copy
// goes on in small pieces; each returns its large buffer when it ends.
func TestLargeCopyBuffersAreBounded(t *testing.T) {
	bufs := &copyBuffers{maxLarge: 1}
	held, ok := bufs.getLarge()
	if !ok {
		t.Fatal("the first large buffer was refused")
	}
	data := randomBytes(3 * smallCopyBuffer)
	var dst writeSizes
	if _, err := io.Copy(&dst, grownSource{r: &trickle{data: data, step: 1 << 20}, bufs: bufs}); err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copy: %v", err)
	}
	wantWrites(t, dst.sizes, smallCopyBuffer, smallCopyBuffer, smallCopyBuffer)
	bufs.put(held)
	dst = writeSizes{}
	data = randomBytes(smallCopyBuffer + largeCopyBuffer)
	if _, err := io.Copy(&dst, grownSource{r: &trickle{data: data, step: 1 << 20}, bufs: bufs}); err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copy: %v", err)
	}
	wantWrites(t, dst.sizes, smallCopyBuffer, largeCopyBuffer)
	if n := bufs.largeLent.Load(); n != 0 {
		t.Fatalf("%d large buffers still lent after the copies ended", n)
	}
}

func TestGrownSourceKeepsWhatArrivedBeforeAnError(t *testing.T) {
	data := randomBytes(300_000)
	cut := errors.New("connection reset")
	var dst writeSizes
	n, err := io.Copy(&dst, newCopy(data, 70_000, cut))
	if !errors.Is(err, cut) {
		t.Fatalf("error %v, want the read's", err)
	}
	if n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("kept %d bytes (%d written), want all %d that arrived", n, dst.Len(), len(data))
	}
}

// A source's own io.ErrUnexpectedEOF is an error, not the end of the source.
func TestGrownSourceReportsUnexpectedEOF(t *testing.T) {
	var dst writeSizes
	_, err := io.Copy(&dst, newCopy(randomBytes(10), 4, io.ErrUnexpectedEOF))
	if !errors.Is(err, io.ErrUnexpectedEOF) || dst.Len() != 10 {
		t.Fatalf("error %v after %d bytes, want io.ErrUnexpectedEOF after 10", err, dst.Len())
	}
}

func TestGrownSourceStopsAtAWriteError(t *testing.T) {
	full := errors.New("no space left")
	dst := writeSizes{fail: full}
	n, err := io.Copy(&dst, newCopy(randomBytes(3*largeCopyBuffer), 1<<20, nil))
	if !errors.Is(err, full) || n != smallCopyBuffer {
		t.Fatalf("copied %d, %v; want %d and the write's error", n, err, smallCopyBuffer)
	}
}

// diskWrite writes data to a new disk upload through the guard, from a
// source that delivers step bytes per read, and returns the file's size as
// seen before each read, with the bytes delivered by then.
func diskWrite(t *testing.T, data []byte, step int) (sizes, delivered []int64) {
	t.Helper()
	b, dir := newDiskBackend(t)
	ctx := context.Background()
	up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "up", Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "uploads", "up")
	src := &trickle{data: data, step: step, seen: func(d int) {
		st, err := os.Stat(path)
		if err != nil {
			t.Errorf("stat: %v", err)
			return
		}
		sizes, delivered = append(sizes, st.Size()), append(delivered, int64(d))
	}}
	n, err := up.WriteChunk(ctx, 0, src)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	stored, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("stored bytes differ (%v)", err)
	}
	info, err := b.Info(ctx, "up")
	if err != nil || info.Offset != int64(len(data)) {
		t.Fatalf("info %+v %v", info, err)
	}
	return sizes, delivered
}

// The disk store receives a fast client's bytes through the guard in large
// pieces, not in io.Copy's 32 KiB.
func TestDiskWritesAFastClientInLargePieces(t *testing.T) {
	data := randomBytes(smallCopyBuffer + 2*largeCopyBuffer)
	sizes, _ := diskWrite(t, data, 1<<20)
	want := []int64{0, smallCopyBuffer, smallCopyBuffer + largeCopyBuffer, smallCopyBuffer + 2*largeCopyBuffer}
	if !slices.Equal(sizes, want) {
		t.Fatalf("file sizes before each read %v, want %v", sizes, want)
	}
}

// What a slow client sent is in the file before the next read waits for
// more: a HEAD, or a crash, finds every byte that arrived.
func TestDiskStoresEachReadBeforeTheNext(t *testing.T) {
	sizes, delivered := diskWrite(t, randomBytes(100_000), 16<<10)
	for i := range sizes {
		if sizes[i] != delivered[i] {
			t.Fatalf("before read %d the file held %d of the %d bytes delivered", i, sizes[i], delivered[i])
		}
	}
}
