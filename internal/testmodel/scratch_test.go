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
	for _, s := range []Size{Tiny, Slow} {
		os.MkdirAll(dir+"/"+s.Name, 0o755)
		mf, err := WriteDir(dir+"/"+s.Name, s)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(dir + "/" + s.Name + "/" + s.Name + ".gguf")
		fmt.Println(s.Name, mf, fi.Size())
	}
}
