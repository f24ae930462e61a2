m.{column} = (b._moved_from[{index}])::{type}
