package config

import (
	"reflect"
	"testing"
)

// TestPoolSetting: pool.instances takes a number (YAML's int too), auto
// from the environment or a flag, and refuses anything else by its key.
func TestPoolSetting(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, writeFile(t, "pool:\n  instances: 2\n  cpus: [1, 0]\n"), nil)
	if c.Pool.Instances != "2" || c.Pool.Fixed() != 2 || !reflect.DeepEqual(c.Pool.CPUs, []int{1, 0}) {
		t.Errorf("file: pool %+v", c.Pool)
	}
	t.Setenv("HERD_POOL__INSTANCES", "auto")
	if c = mustLoad(t, "", nil); !c.Pool.Auto() || !c.Pool.Enabled() {
		t.Errorf("environment: pool %+v", c.Pool)
	}
	if c = mustLoad(t, "", map[string]any{"pool.instances": "3"}); c.Pool.Fixed() != 3 {
		t.Errorf("flag: pool %+v", c.Pool)
	}
	_, err := Load("", map[string]any{"pool.instances": "some"})
	keyError(t, err, "pool.instances")
	_, err = Load("", map[string]any{"pool.cores_per_instance": 0})
	keyError(t, err, "pool.cores_per_instance")
}
