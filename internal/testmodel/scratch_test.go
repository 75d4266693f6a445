package testmodel

import (
	"fmt"
	"os"
	"testing"
)

func TestScratchWrite(t *testing.T) {
	dir := os.Getenv("TM_DIR")
	if dir == "" {
		t.Skip()
	}
	expF16 = os.Getenv("TM_F16") != ""
	var sizes []Size
	for _, c := range [][4]int{{8, 512, 8, 1536}} {
		sizes = append(sizes, Size{fmt.Sprintf("v%d-%d-%d-%d", c[0], c[1], c[2], c[3]), c[0], c[1], c[2], c[3], 2048})
	}
	for _, s := range sizes {
		os.MkdirAll(dir+"/"+s.Name, 0o755)
		mf, err := WriteDir(dir+"/"+s.Name, s)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(dir + "/" + s.Name + "/" + s.Name + ".gguf")
		fmt.Println(s.Name, mf, fi.Size())
	}
}
