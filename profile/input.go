package profile

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// MaxConfigSize bounds the config file Load reads. A config with
// every built-in profile spelt out is about 4 KiB; a thousand profiles
// would still fit. A larger file is a mistake (or /dev/zero), refused with
// this limit named rather than read into memory.
const MaxConfigSize = 1 << 20

// checkProfileNames refuses a config that defines a profile twice (YAML
// does not, when read node by node), since which one would apply is a
// guess, and a profile without a name, which nothing could ask for.
func checkProfileNames(path string, root *yaml.Node) error {
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "profiles" || root.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		val := root.Content[i+1]
		for j := 0; j+1 < len(val.Content); j += 2 {
			name := val.Content[j]
			if name.Kind != yaml.ScalarNode || name.Value == "" {
				return configError(path, name.Line, "profiles", errors.New("want a profile name (a string) as each key"))
			}
			if line, ok := seen[name.Value]; ok {
				return configError(path, name.Line, "profiles."+name.Value,
					fmt.Errorf("defined again (first on line %d): keep one", line))
			}
			seen[name.Value] = name.Line
		}
	}
	return nil
}
